import { SINK_PROVIDER } from './settings.ts'

// What each service must be told to use the local network instead of Jetstream, the
// internet's DNS and real MX hosts. The stack derives these from its port plan before the
// network starts; a test that starts the network on ports 0 derives them from where it
// listens, so both give the services exactly the same picture of the network.

export type NetworkAddresses = {
  plcUrl: string
  /** The PDS's own URL (dev mode: http://localhost:<port>), the one in its DID documents. */
  pdsUrl: string
  dnsPort: number
  /** Where every MX host is reached: the sink. */
  sinkPort: number
  poolDomain: string
}

export function serviceDefaults(n: NetworkAddresses): Record<string, string> {
  const dns = String(n.dnsPort)
  return {
    // Labeler: the PDS's firehose instead of Jetstream; DIDs and domains checked locally.
    ATMOS_LABELER_INGEST_SOURCE: 'firehose',
    ATMOS_LABELER_INGEST_FIREHOSE_URL: n.pdsUrl,
    ATMOS_LABELER_VERIFY_PLC_URL: n.plcUrl,
    ATMOS_LABELER_VERIFY_DNS_SERVERS: '127.0.0.1',
    ATMOS_LABELER_VERIFY_DNS_PORT: dns,
    // Relay: MX lookups in the local DNS, every MX host is the sink on its port.
    ATMOS_RELAY_DELIVERY_DNS_SERVERS: '127.0.0.1',
    ATMOS_RELAY_DELIVERY_DNS_PORT: dns,
    ATMOS_RELAY_DELIVERY_MX_PORT: String(n.sinkPort),
    // Admin: sign-in on the local PDS (plain HTTP), the wizard's checks on the local DNS and PLC.
    ATMOS_ADMIN_OAUTH_PLC_URL: n.plcUrl,
    ATMOS_ADMIN_OAUTH_HANDLE_RESOLVER: n.pdsUrl,
    ATMOS_ADMIN_OAUTH_ALLOW_HTTP: 'true',
    ATMOS_ADMIN_ENROLL_PLC_URL: n.plcUrl,
    ATMOS_ADMIN_ENROLL_DNS_SERVERS: '127.0.0.1',
    ATMOS_ADMIN_ENROLL_DNS_PORT: dns,
    ATMOS_ADMIN_ENROLL_SPF_INCLUDE: `_spf.${n.poolDomain}`,
    ATMOS_ADMIN_ENROLL_MX_HOST: `mx.${n.poolDomain}`,
    // Members' DMARC records send aggregate reports to fbl-ingest's report mailbox.
    ATMOS_ADMIN_ENROLL_DMARC_RUA: `dmarc@${n.poolDomain}`,
    // fbl-ingest: reports checked on the local DNS, the sink trusted as a feedback-loop provider.
    ATMOS_FBL_INGEST_DNS_SERVERS: '127.0.0.1',
    ATMOS_FBL_INGEST_DNS_PORT: dns,
    ATMOS_FBL_INGEST_FEEDBACK_PROVIDERS: JSON.stringify([SINK_PROVIDER]),
    // A newcomer sends a handful of messages, not the hundred a real window needs before its
    // rates decide anything: locally two do, so that a bounce and a complaint show their effect.
    ATMOS_FBL_INGEST_THRESHOLDS_MIN_VOLUME: '2',
    // The relay sends from loopback here: reports' rows from it are the pool's.
    ATMOS_FBL_INGEST_DMARC_POOL_IPS: '127.0.0.1',
    // Webhooks: a member's receiver on this machine (http://127.0.0.1:…) is the local network's
    // whole point; production refuses both.
    ATMOS_WEBHOOKS_ALLOW_HTTP: 'true',
    ATMOS_WEBHOOKS_ALLOW_PRIVATE: 'true',
    ATMOS_ADMIN_WEBHOOKS_ALLOW_HTTP: 'true',
    ATMOS_ADMIN_WEBHOOKS_ALLOW_PRIVATE: 'true',
  }
}
