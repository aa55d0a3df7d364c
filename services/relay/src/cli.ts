// Operator commands (`pnpm --filter @atmos/relay relay <command>`, or `node src/cli.ts`).
// Every command answers --help; `relay --help` lists them all. A usage error exits 64.
// Usage and arguments are settled here; the work (src/commands.ts) is imported only when a
// command runs, so that help and usage errors load the argument parser alone.
import { type CommandTree, command, runCli, subject, UsageError } from '@atmos/config/cli'

const work = () => import('./commands.ts')

const DID_ARG = { name: '<did>', help: "the member's DID (did:plc:... or did:web:...)" }
const WHO_ARG = { name: '<did|domain>', help: 'a DID (the member, all its domains) or a domain (that domain only)' }
const SELECTOR_OPT = {
  type: 'string',
  value: 'STEM',
  help: 'DKIM selector stem: keys <STEM>r (RSA-2048) and <STEM>e (Ed25519); default atmos1',
} as const
const REASON_OPT = { type: 'string', value: 'REASON', help: 'why, recorded with the change (required)' } as const

const membersAdd = command({
  usage: '<did> <domain> [--handle H] [--selector STEM]',
  help:
    'Enrols a member (active at once) with its first sending domain, as `domains add` adds one:\n' +
    'DKIM keys <STEM>r (RSA-2048) and <STEM>e (Ed25519), sealed; a credential scoped to the domain.\n' +
    'Prints the password once, the DKIM records and the attestation record to write.\n' +
    'The older form `--did DID --domain DOMAIN` still works and says it is deprecated.',
  args: [DID_ARG, { name: '<domain>', help: 'its first sending domain' }],
  options: {
    handle: { type: 'string', value: 'H', help: "the member's handle, shown in listings" },
    selector: SELECTOR_OPT,
    did: { type: 'string', value: 'DID', help: 'deprecated: give <did> as an argument' },
    domain: { type: 'string', value: 'DOMAIN', help: 'deprecated: give <domain> as an argument' },
  },
  async run({ values, positionals }, ctx) {
    const did = subject(ctx, positionals[0], { did: values.did }, '<did>')
    const domain = subject(ctx, positionals[values.did === undefined ? 1 : 0], { domain: values.domain }, '<domain>')
    const expected = 2 - Number(values.did !== undefined) - Number(values.domain !== undefined)
    if (positionals.length > expected) throw new UsageError(`unexpected argument ${positionals[expected]}`)
    if (!did || !domain) throw new UsageError('a DID and a domain are required')
    return (await work()).membersAdd({ did, domain, handle: values.handle, selector: values.selector })
  },
})

const membersList = command({
  usage: '',
  help: 'Every member with its status and the domains it holds now; "no members" when there are none.',
  run: async () => (await work()).membersList(),
})

const statusCommand = (sub: 'suspend' | 'reinstate') =>
  command({
    usage: '<did|domain> --reason REASON',
    help:
      `${sub === 'suspend' ? 'Suspends' : 'Reinstates'} a member (given its DID: all its domains) or one domain ` +
      '(given a domain: that domain only),\nrecords the change and tells the labeler (member-status-changed). ' +
      'Exit 75 when Redis did not take the event.',
    args: [WHO_ARG],
    options: {
      reason: REASON_OPT,
      did: { type: 'string', value: 'DID', help: 'deprecated: give <did> as an argument' },
    },
    async run({ values, positionals }, ctx) {
      const who = subject(ctx, positionals[0], { did: values.did }, '<did|domain>')
      if (!who) throw new UsageError('a DID or domain is required')
      if (!values.reason) throw new UsageError('--reason is required')
      return (await work()).changeStatus(who, sub === 'suspend' ? 'suspended' : 'active', values.reason)
    },
  })

const membersRotate = command({
  usage: '<did|domain>',
  help:
    'New SMTP passwords, each printed once: for a domain, its credential; for a DID, each live\n' +
    'credential of the member. The old ones stop working at once.',
  args: [{ name: '<did|domain>', help: 'a DID (every live credential of the member) or a domain (its credential)' }],
  min: 1,
  run: async ({ positionals }) => (await work()).rotatePasswords(positionals[0]!),
})

const domainsAdd = command({
  usage: '<did> <domain> [--selector STEM]',
  help:
    'Adds a sending domain to a member (at most pool.maxDomainsPerMember): active, warming from now,\n' +
    'DKIM keys <STEM>r (RSA-2048) and <STEM>e (Ed25519), a credential scoped to it (username = the\n' +
    "domain). Refuses a domain another member holds or another DID's attestation holds.\n" +
    'Prints the password once, the DKIM records and the attestation record to write.',
  args: [DID_ARG, { name: '<domain>', help: 'the domain to add' }],
  min: 2,
  options: { selector: SELECTOR_OPT },
  async run({ values, positionals }) {
    const [did, domain] = positionals as [string, string]
    return (await work()).domainsAdd({ did, domain, selector: values.selector })
  },
})

const domainsList = command({
  usage: '[<did>]',
  help:
    "Domains held now (one member's with a DID): member, status, warming day and cap, selectors, credential;\n" +
    '"no domains" when there are none.',
  args: [{ name: '<did>', help: "only this member's domains" }],
  run: async ({ positionals }) => (await work()).domainsList(positionals[0]),
})

const domainsRemove = command({
  usage: '<domain> --reason REASON',
  help:
    'Gives a domain up: the row stays (removed, with the reason), its scoped credentials are revoked\n' +
    'and its DKIM keys retired; the labeler is told. Exit 75 when Redis did not take the event.',
  args: [{ name: '<domain>', help: 'the domain to give up' }],
  min: 1,
  options: { reason: REASON_OPT },
  async run({ values, positionals }) {
    if (!values.reason) throw new UsageError('--reason is required')
    return (await work()).domainsRemove(positionals[0]!, values.reason)
  },
})

const keysInit = command({
  usage: '[--selector S]',
  help:
    "Creates what the relay needs once: the relay's and the pool's key-encryption key files and the\n" +
    "pool's token secret (mode 0600, never overwritten) and the pool DKIM key, sealed under the pool's\n" +
    "KEK; prints its DNS record. Re-seals a pool key still under the relay's KEK (as reseal-pool).",
  options: { selector: { type: 'string', value: 'S', help: "the pool DKIM key's selector; default pool1" } },
  run: async ({ values }) => (await work()).keysInit(values.selector ?? 'pool1'),
})

const keysReseal = command({
  usage: '',
  help:
    "Moves pool DKIM keys sealed under the relay's KEK (before the pool had its own) under the pool's,\n" +
    "so that fbl-ingest and delivery, which hold only the pool's KEK, can sign.",
  run: async () => (await work()).keysResealPool(),
})

/** Commands by group and name. */
export const COMMANDS: CommandTree = {
  keys: { init: keysInit, 'reseal-pool': keysReseal },
  members: {
    add: membersAdd,
    list: membersList,
    suspend: statusCommand('suspend'),
    reinstate: statusCommand('reinstate'),
    'rotate-password': membersRotate,
  },
  domains: { add: domainsAdd, list: domainsList, remove: domainsRemove },
}

process.exit(await runCli('relay', COMMANDS, process.argv.slice(2)))
