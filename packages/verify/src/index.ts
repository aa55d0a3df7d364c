export { checkDkim } from './checks/dkim.ts'
export { checkDmarc } from './checks/dmarc.ts'
export { checkDomainControl } from './checks/domain-control.ts'
export { checkMx } from './checks/mx.ts'
export { checkSpf, PROBE_IPV4, PROBE_IPV6 } from './checks/spf.ts'
export {
  createDnsResolver,
  type DnsResolver,
  type DnsResolverOptions,
  describeDnsError,
  errorCode,
  isAbsence,
  type MxRecord,
} from './dns/resolver.ts'
export {
  createSecureDnsResolver,
  type SecureAnswer,
  type SecureDnsResolver,
  type SecureDnsResolverOptions,
  type TlsaRecord,
} from './dns/secure-query.ts'
export {
  createIdentityResolver,
  type DidDocument,
  type IdentityResolver,
  type IdentityResolverOptions,
  InvalidDidDocumentError,
} from './identity/resolver.ts'
export type { CheckName, CheckResult, Outcome, VerifyDeps } from './types.ts'
export {
  type AttestationInput,
  type AttestationVerification,
  inputProblem,
  verifyAttestation,
} from './verify-attestation.ts'
