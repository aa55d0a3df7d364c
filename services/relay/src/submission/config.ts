import { field, section } from '@atmos/config'

/** SMTP submission (587/465) for members: TLS, AUTH, limits, warming caps. */
export const submissionSection = section({
  host: field.string('127.0.0.1'),
  port: field.port(587),
})
