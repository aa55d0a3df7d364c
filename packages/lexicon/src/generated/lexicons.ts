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
          "A PDS operator's declaration of cooperative membership and mail domain control. The labeling service verifies DNS configuration (MX, SPF, DKIM, DMARC) independently and applies verification labels to the operator's DID. The record key is the attested domain.",
        key: 'any',
        record: {
          type: 'object',
          required: ['domain', 'dkimSelectors', 'createdAt'],
          properties: {
            domain: {
              type: 'string',
              description:
                "The mail domain this attestation covers. Must match the record key. Domain control is verified by the labeling service via DNS (matching the DID's handle or a TXT record pointing to the DID).",
              minLength: 1,
              maxLength: 253,
            },
            dkimSelectors: {
              type: 'array',
              description:
                'DKIM selectors configured for this domain. The labeling service looks up DNS TXT records at <selector>._domainkey.<domain> to verify key publication.',
              minLength: 1,
              maxLength: 10,
              items: {
                type: 'string',
                description: 'A DKIM selector name.',
                minLength: 1,
                maxLength: 63,
              },
            },
            relayMember: {
              type: 'boolean',
              description:
                'Whether this operator wants to participate in the cooperative relay pool. Absent means no.',
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
  EmailAtmosDefs: {
    lexicon: 1,
    id: 'email.atmos.defs',
    description:
      'Shared definitions for the Comail cooperative. Documents the label vocabulary used by the cooperative labeler; the labeler emits the corresponding kebab-case string values.',
    defs: {
      cooperativeLabel: {
        type: 'string',
        description:
          'Label values emitted by the cooperative labeling service on member DIDs.',
        knownValues: ['verified-mail-operator', 'relay-member', 'clean-sender'],
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
  EmailAtmosDefs: 'email.atmos.defs',
} as const
