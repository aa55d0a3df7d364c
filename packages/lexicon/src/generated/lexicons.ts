/**
 * GENERATED CODE - DO NOT MODIFY
 */
import {
  type LexiconDoc,
  Lexicons,
  ValidationError,
  type ValidationResult,
} from '@atproto/lexicon'
import { type $Typed, is$typed, maybe$typed } from './util.ts'

export const schemaDict = {
  EmailAtmosAttestation: {
    lexicon: 1,
    id: 'email.atmos.attestation',
    defs: {
      main: {
        type: 'record',
        description:
          "A mail operator's claim, published in its own repository, that the account controls a mail domain and signs its mail with the listed DKIM selectors. The Atmosphere Mail labeler verifies the claim against DNS and labels the account. One per account.",
        key: 'literal:self',
        record: {
          type: 'object',
          required: ['domain', 'dkimSelectors', 'createdAt'],
          properties: {
            domain: {
              type: 'string',
              description:
                "The mail domain, a fully-qualified DNS name in lower case without a trailing dot (e.g. 'mail.example.com'). Not an IP address.",
              minLength: 4,
              maxLength: 253,
            },
            dkimSelectors: {
              type: 'array',
              description:
                'DKIM selectors published under <selector>._domainkey.<domain>; each must hold a valid key. Single DNS labels: letters, digits and hyphens.',
              minLength: 1,
              maxLength: 8,
              items: {
                type: 'string',
                minLength: 1,
                maxLength: 63,
              },
            },
            relayMember: {
              type: 'boolean',
              description:
                'The operator intends to send through the shared Atmosphere Mail relay (and so to hold the relay-member label once enrolled).',
            },
            createdAt: {
              type: 'string',
              format: 'datetime',
            },
          },
        },
      },
    },
  },
} as const satisfies Record<string, LexiconDoc>
export const schemas = Object.values(schemaDict) satisfies LexiconDoc[]
export const lexicons: Lexicons = new Lexicons(schemas)

export function validate<T extends { $type: string }>(
  v: unknown,
  id: string,
  hash: string,
  requiredType: true,
): ValidationResult<T>
export function validate<T extends { $type?: string }>(
  v: unknown,
  id: string,
  hash: string,
  requiredType?: false,
): ValidationResult<T>
export function validate(
  v: unknown,
  id: string,
  hash: string,
  requiredType?: boolean,
): ValidationResult {
  return (requiredType ? is$typed : maybe$typed)(v, id, hash)
    ? lexicons.validate(`${id}#${hash}`, v)
    : {
        success: false,
        error: new ValidationError(
          `Must be an object with "${hash === 'main' ? id : `${id}#${hash}`}" $type property`,
        ),
      }
}

export const ids = {
  EmailAtmosAttestation: 'email.atmos.attestation',
} as const
