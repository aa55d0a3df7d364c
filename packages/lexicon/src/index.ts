export {
  ATTESTATION_COLLECTION,
  type AttestationRecord,
  type AttestationValidation,
  domainProblem,
  LEGACY_ATTESTATION_RKEY,
  recordKeyProblem,
  selectorProblem,
  validateAttestation,
} from './attestation.ts'
export { ids, lexicons, schemaDict, schemas } from './generated/lexicons.ts'
export { COOPERATIVE_LABELS, type CooperativeLabel, LABELS } from './labels.ts'
