import { cleanSenderSection, field, section, serviceConfigSchema } from '@atmos/config'
import { z } from 'zod'

/** The labeler's own settings, under `labeler` in the config file and `ATMOS_LABELER_*` in the environment. */
export const labelerSection = section({
  /**
   * The labeler's DID, the `src` of every label. Empty: the signing key's did:key, which
   * any client can verify without a DID document (fine locally; production uses did:plc).
   */
  did: z
    .string()
    .regex(/^(did:[a-z]+:[a-zA-Z0-9._:%-]+)?$/, 'expected a DID such as did:plc:abc123')
    .default(''),
  /** secp256k1 private key in hex, mode 0600; `labeler init` creates it. */
  signingKeyFile: field.string('.state/labeler/label-signing.key'),
  /** Where clients reach the XRPC endpoint; goes into the DID document's #atproto_labeler service. */
  publicUrl: field.url('http://127.0.0.1:2583', ['http', 'https']),
  /** The XRPC endpoint (queryLabels, subscribeLabels). */
  xrpc: section({
    host: field.string('127.0.0.1'),
    port: field.port(2583),
  }),
  ingest: section({
    /**
     * Where attestations come from: Jetstream (production), an atproto repo firehose
     * (com.atproto.sync.subscribeRepos: what a single PDS offers; commits are signed), or
     * none (a replica that only serves reads).
     */
    source: z.enum(['jetstream', 'firehose', 'none']).default('jetstream'),
    jetstreamUrl: field.url('wss://jetstream1.us-east.bsky.network/subscribe', ['ws', 'wss']),
    firehoseUrl: field.url('wss://bsky.network', ['ws', 'wss', 'http', 'https']),
    /** Replayed on every reconnect; events in the overlap are applied idempotently. */
    rewind: field.duration('5s'),
    reconnectMin: field.duration('1s'),
    reconnectMax: field.duration('60s'),
    /** How often the cursor of events we drop (not ours) is saved. */
    cursorFlushInterval: field.duration('1s'),
    /**
     * How often verification requests that never reached the queue (or that Redis lost, being
     * restarted empty) are re-enqueued: any older than one interval, so caught up within two.
     */
    reconcileInterval: field.duration('60s'),
    /**
     * Attestation rows one DID may hold, counting rejected and deleted ones: any account can
     * write records of our collection, so its rows are bounded. A record under a new key
     * past the limit is refused (logged, counted); one under a key it holds still applies.
     */
    maxRecordsPerDid: field.int(10, { min: 1, max: 1000 }),
  }),
  verify: section({
    /** DNS servers the checks ask; empty: the machine's resolvers (/etc/resolv.conf). */
    dnsServers: field.list([]),
    /** Port of those servers; 0: 53. Tests point this at a loopback server. */
    dnsPort: field.port(0),
    dnsTimeout: field.duration('2s'),
    dnsTries: field.int(2, { min: 1, max: 5 }),
    /** The PLC directory that resolves did:plc (a local one in tests). */
    plcUrl: field.url('https://plc.directory', ['http', 'https']),
    /** How long checks may fail only temporarily (SERVFAIL, timeouts) before labels are negated. */
    gracePeriod: field.duration('72h'),
    /** A temporary error is re-checked after a backoff between these, doubling with the outage. */
    retryMin: field.duration('5m'),
    retryMax: field.duration('4h'),
    /** Verification jobs run at once in this process. */
    concurrency: field.int(8, { min: 1, max: 256 }),
    /**
     * Verification runs one DID may cause per window, by who asked. `network` counts what
     * any account can cause by writing to its repo (record writes, identity and account
     * events); `admin` counts a signed-in member's "check now". The scheduler's sweep, the
     * operator's run-once and the retries of temporary errors are bounded by construction
     * and not counted. A run past the budget waits for the next window; none is dropped.
     */
    budgetWindow: field.duration('1h'),
    networkRunsPerWindow: field.int(6, { min: 1, max: 100_000 }),
    adminRunsPerWindow: field.int(30, { min: 1, max: 100_000 }),
  }),
  labels: section({
    /**
     * How often the scheduler re-verifies (keep equal to `scheduler.reverifyInterval`): a
     * held label is renewed when its expiry is less than one interval away.
     */
    reverifyInterval: field.duration('24h'),
    /** Lifetime (`exp`) of a positive label; 0: 2 × reverifyInterval + verify.gracePeriod. */
    expiry: field.duration('0'),
  }),
  /**
   * clean-sender over the member's last 30 days: issued when both rates are below the issue
   * rates with at least `minVolume` messages; negated when one reaches its negate rate; in
   * between it stays as it is, so a rate near a limit does not flip the label daily. Keep
   * the negate rates at or below fbl-ingest's warn thresholds (defaults 5 % and 0.1 %).
   */
  cleanSender: cleanSenderSection,
  /** Rendered queryLabels pages kept until a label changes; 0 turns the cache off. */
  queryCacheBytes: field.int(64 * 1024 * 1024, { min: 0, max: 4 * 1024 * 1024 * 1024 }),
  subscribe: section({
    /** Events a slow subscriber may fall behind before it gets ConsumerTooSlow. */
    maxBuffer: field.int(5000, { min: 10, max: 1_000_000 }),
    /** Rows read per query while replaying from a cursor. */
    backfillPageSize: field.int(1000, { min: 1, max: 10_000 }),
  }),
})

export const labelerConfigSchema = serviceConfigSchema('labeler', { httpPort: 8101, own: labelerSection })

export type LabelerConfig = z.output<typeof labelerConfigSchema>
