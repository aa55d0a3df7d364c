import { LABEL_VALUES } from './values.ts'

/** An informational badge on accounts: never a warning, never a blur. */
function definition(identifier: string, name: string, description: string) {
  return {
    identifier,
    severity: 'inform',
    blurs: 'none',
    defaultSetting: 'warn',
    adultOnly: false,
    locales: [{ lang: 'en', name, description }],
  }
}

/**
 * The app.bsky.labeler.service record that tells Bluesky clients what this labeler's
 * values mean. All are informational badges on accounts, never a warning or a blur.
 */
export function labelerServiceRecord(now = new Date()) {
  return {
    $type: 'app.bsky.labeler.service',
    policies: {
      labelValues: [LABEL_VALUES.verifiedMailOperator, LABEL_VALUES.relayMember, LABEL_VALUES.cleanSender],
      labelValueDefinitions: [
        definition(
          LABEL_VALUES.verifiedMailOperator,
          'Verified mail operator',
          'Controls a mail domain whose MX, SPF, DKIM and DMARC (quarantine or reject) were verified by Atmosphere Mail, and re-verified daily.',
        ),
        definition(
          LABEL_VALUES.relayMember,
          'Atmosphere Mail relay member',
          'A verified mail operator in good standing that sends through the shared Atmosphere Mail relay.',
        ),
        definition(
          LABEL_VALUES.cleanSender,
          'Clean sender',
          'A relay member whose mail over the last 30 days bounced and drew complaints well below the limits mailbox providers set.',
        ),
      ],
    },
    createdAt: now.toISOString(),
  }
}

/**
 * The DID-document entries a labeler needs so that clients find and verify it: the
 * signing key as `#atproto_label` and the endpoint as `#atproto_labeler`.
 */
export function didDocumentChanges(did: string, didKey: string, publicUrl: string) {
  return {
    verificationMethods: { atproto_label: didKey },
    services: { atproto_labeler: { type: 'AtprotoLabeler', endpoint: publicUrl } },
    // As it appears in the resolved document:
    verificationMethod: {
      id: `${did}#atproto_label`,
      type: 'Multikey',
      controller: did,
      publicKeyMultibase: didKey.replace(/^did:key:/, ''),
    },
    service: { id: '#atproto_labeler', type: 'AtprotoLabeler', serviceEndpoint: publicUrl },
  }
}
