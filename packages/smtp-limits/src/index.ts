export { addressKey } from './address.ts'
export { type LimitEvent, LimitedSMTPServer, type LimitOptions, type LimitReason, type SmtpLimits } from './server.ts'
