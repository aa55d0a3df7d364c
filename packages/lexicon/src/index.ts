export {
  ATTESTATION_COLLECTION,
  ATTESTATION_RKEY,
  type AttestationRecord,
  type AttestationValidation,
  domainProblem,
  selectorProblem,
  validateAttestation,
} from './attestation.ts'
export { ids, lexicons, schemaDict, schemas } from './generated/lexicons.ts'
