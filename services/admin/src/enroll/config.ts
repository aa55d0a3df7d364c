import { field, section } from '@atmos/config'
import { z } from 'zod'

/**
 * The enrollment wizard's settings, `admin.enroll` in the config file (`ATMOS_ADMIN_ENROLL_*`).
 * The lead adds `enroll: enrollSection` to the admin's section when merging.
 */
export const enrollSection = section({
  /** The name members' SPF records include (`include:<spfInclude>`): the pool's sending addresses. */
  spfInclude: field.string('_spf.atmos.localhost'),
  /** Where the pool receives DMARC aggregate reports; empty leaves `rua=` out of the DMARC record. */
  dmarcRua: z.string().default(''),
  /** `quarantine` or `reject`: the policy of the DMARC record the wizard proposes. */
  dmarcPolicy: z.enum(['quarantine', 'reject']).default('quarantine'),
  /** The pool's inbound host for replies (the optional MX record); empty offers no MX. */
  mxHost: z.string().default(''),
  /** The relay's submission host name as members configure it (its certificate's name). */
  relayHost: field.string('localhost'),
  /** The relay's STARTTLS submission port. */
  relayPort: field.port(587),
  /** The relay's implicit-TLS submission port (relay.submission.tlsPort); 0 when it has none. */
  relayTlsPort: field.port(0),
  /**
   * The relay's members' key-encryption key file (relay.kekFile): the DKIM keys the wizard
   * issues are sealed under it, so that the relay can open them. A secret file (0600).
   */
  kekFile: field.string('.state/relay/kek'),
  /** The DKIM selector stem of new domains' keys (`<stem>r`, `<stem>e`). */
  selectorStem: field.string('atmos1'),
  /** Check-now runs a DID may start per window, and the window. */
  checkLimit: field.int(6, { min: 1, max: 1000 }),
  checkWindow: field.duration('1m'),
  /**
   * The resolvers check-now asks, as the labeler's verify section: empty uses the system's
   * (the labeler's own must answer the same for "check now" to predict its verdict).
   */
  dnsServers: field.list([]),
  dnsPort: field.port(0),
  dnsTimeout: field.duration('2s'),
  dnsTries: field.int(2, { min: 1, max: 5 }),
  /** The PLC directory that resolves did:plc. */
  plcUrl: field.url('https://plc.directory', ['http', 'https']),
  /** Bound on one check-now (every DNS query and the DID resolution in it). */
  checkTimeout: field.duration('15s'),
  /**
   * How long the page after publishing (or activating) watches for the labels before it stops
   * and explains what may be holding them up.
   */
  labelsTimeout: field.duration('120s'),
  /**
   * How long a DKIM key rotation's old records must stay in DNS after the switch: mail signed
   * with the old keys before it may still be delivered (and verified) until the relay gives
   * up on it, relay.delivery.maxAge (3d), plus a day for receivers that verify late.
   */
  oldKeyRetention: field.duration('4d'),
})

export type EnrollConfig = z.output<typeof enrollSection>
