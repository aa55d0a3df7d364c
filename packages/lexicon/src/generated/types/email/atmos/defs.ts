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
const id = 'email.atmos.defs'

/** Label values emitted by the cooperative labeling service on member DIDs. */
export type CooperativeLabel =
  'verified-mail-operator' | 'relay-member' | 'clean-sender' | (string & {})
