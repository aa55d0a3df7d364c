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
  /** The mail domain, a fully-qualified DNS name in lower case without a trailing dot (e.g. 'mail.example.com'). Not an IP address. */
  domain: string
  /** DKIM selectors published under <selector>._domainkey.<domain>; each must hold a valid key. Single DNS labels: letters, digits and hyphens. */
  dkimSelectors: string[]
  /** The operator intends to send through the shared Atmosphere Mail relay (and so to hold the relay-member label once enrolled). */
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
