export { forbiddenAddress } from './address.ts'
export { asDate, asDateOrNull } from './dates.ts'
export { type EmitType, type EventWriter, emitEvent, emitEvents, type NewEvent, newEventId } from './emit.ts'
export {
  checkEventTypes,
  createEndpoint,
  type DeliveryView,
  deleteEndpoint,
  type Endpoint,
  EndpointError,
  enableEndpoint,
  getEndpoint,
  listEndpoints,
  MAX_ENDPOINTS_PER_MEMBER,
  recentDeliveries,
  rotateSecret,
  updateEndpoint,
} from './endpoints.ts'
export { sealSecret, unsealSecret, webhookSealContext } from './secrets.ts'
export {
  formatSecret,
  newSecret,
  parseSecret,
  SECRET_BYTES,
  sign,
  signatureHeader,
  verifySignature,
} from './signature.ts'
export { checkWebhookUrl, MAX_WEBHOOK_URL, type UrlPolicy, WebhookUrlError } from './url.ts'
