import { field, section } from '@atmos/config'

/** Delivery to recipients' MX hosts: DNS, SMTP client, shaping per MX site, retries. */
export const deliverySection = section({
  /** Port the recipients' MX hosts listen on: 25, except in tests. */
  mxPort: field.port(25),
})
