// Operator commands for feedback and reputation, run through `fbl-ingest` (src/cli.ts). A
// member is named by its DID or by one of the domains it holds; reputation, suppressions and
// status are the member's, over all its domains, and each line shows them with their status.
//   aggregate add <did|domain> --provider gmail --from ISO --to ISO --rate 0.002 [--volume N]
//   suppressions list [<did|domain>]
//   suppressions remove <did|domain> <address>
//   reinstate <did|domain> [--reason TEXT]
// The older `--did D` / `--domain M` / `--address A` forms still work, with a deprecation line.
// Usage and arguments are settled here; the work (src/ops-commands.ts) is imported only when a
// command runs, so that help and usage errors load the argument parser alone.
import { type CommandContext, type CommandTree, command, subject, UsageError } from '@atmos/config/cli'

const work = () => import('./ops-commands.ts')

function required(name: string, value: string | undefined): string {
  if (!value) throw new UsageError(`--${name} is required`)
  return value
}

function isoDate(name: string, value: string | undefined): Date {
  const d = new Date(required(name, value))
  if (Number.isNaN(d.getTime())) throw new UsageError(`--${name} must be an ISO date, got ${value}`)
  return d
}

const WHO = {
  name: '<did|domain>',
  help: 'the member: its DID, or a domain it holds (its reputation, suppressions and status are over all its domains)',
}
const OLD_WHO = {
  did: { type: 'string', value: 'DID', help: 'deprecated: give <did|domain> as an argument' },
  domain: { type: 'string', value: 'DOMAIN', help: 'deprecated: give <did|domain> as an argument' },
} as const

/** The member's DID or domain, from the argument or (deprecated) --did / --domain. */
function who(ctx: CommandContext, positional: string | undefined, values: { did?: string; domain?: string }) {
  return subject(ctx, positional, { did: values.did, domain: values.domain }, '<did|domain>')
}

function requiredWho(named: string | undefined): string {
  if (!named) throw new UsageError('a DID or a domain is required')
  return named
}

const aggregateAdd = command({
  usage: '<did|domain> --provider gmail --from ISO --to ISO --rate 0.002 [--volume N]',
  help:
    "Records a provider's aggregate complaint rate for a member over a period (e.g. from Gmail's Postmaster\n" +
    'Tools) and prints, as one JSON line, the reputation level it now has and why.',
  args: [WHO],
  options: {
    provider: { type: 'string', value: 'NAME', help: 'who reported the rate, e.g. gmail (required)' },
    from: { type: 'string', value: 'ISO', help: 'start of the period, an ISO date (required)' },
    to: { type: 'string', value: 'ISO', help: 'end of the period, an ISO date (required)' },
    rate: { type: 'string', value: 'RATE', help: 'complaint rate as a fraction, e.g. 0.002 for 0.2% (required)' },
    volume: { type: 'string', value: 'N', help: 'messages the rate is over, when known' },
    ...OLD_WHO,
  },
  async run({ values, positionals }, ctx) {
    const member = requiredWho(who(ctx, positionals[0], values))
    const complaintRate = Number(required('rate', values.rate))
    return (await work()).aggregateAdd(member, {
      provider: required('provider', values.provider),
      periodStart: isoDate('from', values.from),
      periodEnd: isoDate('to', values.to),
      complaintRate,
      volume: values.volume === undefined ? null : Number(values.volume),
    })
  },
})

const suppressionsList = command({
  usage: '[<did|domain>]',
  help:
    "Suppressed addresses, one JSON line each (every member's, or one member's). With none, stdout\n" +
    'stays empty (for scripts) and stderr says "no suppressions".',
  args: [WHO],
  options: OLD_WHO,
  async run({ values, positionals }, ctx) {
    return (await work()).suppressionsList(who(ctx, positionals[0], values))
  },
})

const suppressionsRemove = command({
  usage: '<did|domain> <address>',
  help: 'Lets the member send to the address again. Exit 1 when it was not suppressed.',
  args: [WHO, { name: '<address>', help: 'the suppressed recipient address' }],
  options: {
    ...OLD_WHO,
    address: { type: 'string', value: 'ADDRESS', help: 'deprecated: give <address> as an argument' },
  },
  async run({ values, positionals }, ctx) {
    const byFlag = values.did !== undefined || values.domain !== undefined
    const rest = byFlag ? positionals : positionals.slice(1)
    const expected = 2 - Number(byFlag) - Number(values.address !== undefined)
    if (positionals.length > expected) throw new UsageError(`unexpected argument ${positionals[expected]}`)
    const member = requiredWho(who(ctx, byFlag ? undefined : positionals[0], values))
    const address = required('address', subject(ctx, rest[0], { address: values.address }, '<address>'))
    return (await work()).suppressionsRemove(member, address)
  },
})

const reinstate = command({
  usage: '<did|domain> [--reason TEXT]',
  help:
    'Sets a suspended member active again and tells the labeler (member-status-changed), which re-issues\n' +
    'relay-member. Prints the change as one JSON line; exit 1 when Redis did not take the event.',
  args: [WHO],
  options: {
    reason: {
      type: 'string',
      value: 'TEXT',
      help: 'why, recorded with the change; default "reinstated by an operator"',
    },
    ...OLD_WHO,
  },
  async run({ values, positionals }, ctx) {
    const member = requiredWho(who(ctx, positionals[0], values))
    return (await work()).reinstate(member, values.reason ?? 'reinstated by an operator')
  },
})

/** The feedback and reputation commands, as `fbl-ingest` offers them. */
export const OPS_COMMANDS: CommandTree = {
  aggregate: { add: aggregateAdd },
  suppressions: { list: suppressionsList, remove: suppressionsRemove },
  reinstate,
}
