export { addressKey } from './address.ts'
export { MessageRate } from './rate.ts'
export { type LimitEvent, LimitedSMTPServer, type LimitOptions, type LimitReason, type SmtpLimits } from './server.ts'
