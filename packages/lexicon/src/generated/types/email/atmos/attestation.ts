/**
 * GENERATED CODE - DO NOT MODIFY
 */
import { type ValidationResult, BlobRef } from '@atproto/lexicon'
import { CID } from 'multiformats/cid'
import { validate as _validate } from '../../../lexicons.ts'
import {
  type $Typed,
  is$typed as _is$typed,
  type OmitKey,
} from '../../../util.ts'

const is$typed = _is$typed,
  validate = _validate
const id = 'email.atmos.attestation'

export interface Main {
  $type: 'email.atmos.attestation'
  /** The mail domain this attestation covers. Must match the record key. Domain control is verified by the labeling service via DNS (matching the DID's handle or a TXT record pointing to the DID). */
  domain: string
  /** DKIM selectors configured for this domain. The labeling service looks up DNS TXT records at <selector>._domainkey.<domain> to verify key publication. */
  dkimSelectors: string[]
  /** Whether this operator wants to participate in the cooperative relay pool. Absent means no. */
  relayMember?: boolean
  createdAt: string
  [k: string]: unknown
}

const hashMain = 'main'

export function isMain<V>(v: V) {
  return is$typed(v, id, hashMain)
}

export function validateMain<V>(v: V) {
  return validate<Main & V>(v, id, hashMain, true)
}

export {
  type Main as Record,
  isMain as isRecord,
  validateMain as validateRecord,
}
