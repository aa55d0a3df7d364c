// Operator commands (`pnpm --filter @atmos/labeler labeler <command>`, or `node src/cli.ts`):
//
//   init                       create the label signing key (mode 0600) if it is missing and
//                              print its did:key; an existing key is never overwritten
//   verify <did-or-domain>     run every check now for each live attestation of the DID (or of
//          [--did D --selector S ...]   the domain) and print a report per domain with whether the
//                              DID holds it; exit 0 only if all pass (1: a check failed, 75: DNS
//                              could not answer). --did/--selector check a domain that has no
//                              attestation yet
//   declare [--publish --pds URL --identifier HANDLE]
//                              print the app.bsky.labeler.service record and the DID document
//                              entries; with --publish, write the record to the labeler's
//                              repository (password from ATMOS_LABELER_ACCOUNT_PASSWORD)
import { existsSync } from 'node:fs'
import { command, loadConfig, type Parsed, runCli, UsageError } from '@atmos/config'
import { attestations, createDb, verificationStatus } from '@atmos/db'
import { createSigningKeyFile, loadSigningKeyFile } from '@atmos/labels'
import { verifyAttestation } from '@atmos/verify'
import { AtpAgent } from '@atproto/api'
import { and, asc, eq, isNotNull, or } from 'drizzle-orm'
import { type LabelerConfig, labelerConfigSchema } from './config.ts'
import { didDocumentChanges, labelerServiceRecord } from './labels/declaration.ts'
import { createVerifyDeps } from './verify/deps.ts'

const EX_TEMPFAIL = 75

async function init(config: LabelerConfig) {
  const path = config.labeler.signingKeyFile
  if (existsSync(path)) {
    const keypair = await loadSigningKeyFile(path)
    console.log(`signing key already exists at ${path}\n${keypair.did()}`)
    return 0
  }
  const keypair = await createSigningKeyFile(path)
  console.log(`created signing key ${path} (mode 0600)\n${keypair.did()}`)
  return 0
}

type Standing = { holds: boolean; lastOutcome: string; lastRunAt: Date } | undefined

const VERIFY_OPTIONS = {
  did: {
    type: 'string',
    value: 'DID',
    help: 'check the domain for this DID, without an attestation (needs --selector)',
  },
  selector: { type: 'string', multiple: true, value: 'SEL', help: 'a DKIM selector to check (with --did)' },
} as const

async function verify(config: LabelerConfig, { values, positionals }: Parsed<typeof VERIFY_OPTIONS>) {
  const target = positionals[0]!.toLowerCase()
  if (values.did && !values.selector?.length) throw new UsageError('--did needs at least one --selector')
  if (!values.did && values.selector?.length) throw new UsageError('--selector needs --did')
  let inputs: Array<{ did: string; domain: string; dkimSelectors: string[]; standing?: Standing; heldBy?: string }>
  if (values.did && values.selector?.length) {
    inputs = [{ did: values.did, domain: target, dkimSelectors: values.selector }]
  } else {
    // A DID may attest several domains, and a domain be claimed by several DIDs: each
    // attestation is checked and shown on its own, with the labeler's standing record of it.
    const db = createDb({ url: config.database.url, poolMax: 1 })
    try {
      const rows = await db
        .select()
        .from(attestations)
        .where(
          and(
            or(eq(attestations.did, positionals[0]!), eq(attestations.domain, target)),
            eq(attestations.deleted, false),
            eq(attestations.state, 'valid'),
            isNotNull(attestations.domain),
          ),
        )
        .orderBy(asc(attestations.domain), asc(attestations.did))
      if (!rows.length) {
        throw new UsageError(
          `no live attestation for ${target}; to check a domain before it is attested, pass --did and --selector`,
        )
      }
      inputs = []
      for (const att of rows) {
        const domain = att.domain!
        const status = await db.select().from(verificationStatus).where(eq(verificationStatus.domain, domain))
        const own = status.find((s) => s.did === att.did)
        const heldBy = status.find((s) => s.holds && s.did !== att.did)?.did
        inputs.push({ did: att.did, domain, dkimSelectors: att.dkimSelectors, standing: own, heldBy })
      }
    } finally {
      await db.$client.end()
    }
  }
  const deps = createVerifyDeps(config)
  let code = 0
  for (const [i, input] of inputs.entries()) {
    const result = await verifyAttestation(input, deps)
    if (i > 0) console.log('')
    console.log(`${input.domain} (${input.did}): ${result.outcome.toUpperCase()} — ${result.reason}`)
    for (const c of result.checks) {
      console.log(`  ${c.check.padEnd(15)} ${c.outcome.padEnd(9)} ${c.reason}`)
      for (const w of c.warnings) console.log(`  ${''.padEnd(15)} warning   ${w}`)
    }
    const standing = standingLine(input.standing, input.heldBy)
    if (standing) console.log(`  ${'standing'.padEnd(15)} ${standing}`)
    const own = result.outcome === 'pass' ? 0 : result.outcome === 'fail' ? 1 : EX_TEMPFAIL
    // Worst first: a failure outranks a temporary error.
    if (own === 1 || (own === EX_TEMPFAIL && code === 0)) code = own
  }
  return code
}

/** What the labeler has recorded for (DID, domain): whether the DID holds it, and its last run. */
function standingLine(standing: Standing, heldBy: string | undefined): string | undefined {
  if (heldBy) return `held by ${heldBy}: this DID's claim is refused while that one holds it`
  if (!standing) return undefined
  const last = `last run ${standing.lastOutcome} at ${standing.lastRunAt.toISOString()}`
  return `${standing.holds ? 'held by this DID' : 'not held'} (${last})`
}

const DECLARE_OPTIONS = {
  publish: {
    type: 'boolean',
    help: "write the record to the labeler's repository (password from ATMOS_LABELER_ACCOUNT_PASSWORD)",
  },
  pds: { type: 'string', value: 'URL', help: "the PDS of the labeler's account (with --publish)" },
  identifier: { type: 'string', value: 'HANDLE', help: "the labeler account's handle or DID (with --publish)" },
} as const

async function declare(config: LabelerConfig, { values }: Parsed<typeof DECLARE_OPTIONS>) {
  const keypair = await loadSigningKeyFile(config.labeler.signingKeyFile)
  const did = config.labeler.did || keypair.did()
  const record = labelerServiceRecord()
  console.log('app.bsky.labeler.service record (rkey "self"):')
  console.log(JSON.stringify(record, null, 2))
  console.log(`\nDID document of ${did} (a PLC operation for did:plc):`)
  console.log(JSON.stringify(didDocumentChanges(did, keypair.did(), config.labeler.publicUrl), null, 2))
  if (!values.publish) return 0
  const password = process.env.ATMOS_LABELER_ACCOUNT_PASSWORD
  if (!values.pds || !values.identifier || !password) {
    throw new UsageError('--publish needs --pds, --identifier and the password in ATMOS_LABELER_ACCOUNT_PASSWORD')
  }
  const agent = new AtpAgent({ service: values.pds })
  await agent.login({ identifier: values.identifier, password })
  const repo = agent.session!.did
  const res = await agent.com.atproto.repo.putRecord({
    repo,
    collection: 'app.bsky.labeler.service',
    rkey: 'self',
    record,
  })
  console.log(`\npublished ${res.data.uri}`)
  if (config.labeler.did && config.labeler.did !== repo) {
    console.log(`note: the account is ${repo}, but labels are signed as ${config.labeler.did}`)
  }
  return 0
}

const config = () => loadConfig(labelerConfigSchema)

const COMMANDS = {
  init: command({
    usage: '',
    help: 'Creates the label signing key (mode 0600) if it is missing and prints its did:key;\nan existing key is never overwritten.',
    run: () => init(config()),
  }),
  verify: command({
    usage: '<did-or-domain> [--did DID --selector SEL ...]',
    help:
      'Runs every check now for each live attestation of the DID (or of the domain) and prints a report per\n' +
      'domain with whether the DID holds it. Exit 0 only if all pass, 1 when a check failed, 75 when DNS\n' +
      'could not answer. --did and --selector check a domain that has no attestation yet.',
    args: [{ name: '<did-or-domain>', help: 'a DID (each domain it attests) or a domain (each DID attesting it)' }],
    min: 1,
    options: VERIFY_OPTIONS,
    run: (parsed) => verify(config(), parsed),
  }),
  declare: command({
    usage: '[--publish --pds URL --identifier HANDLE]',
    help:
      'Prints the app.bsky.labeler.service record and the DID document entries the labeler needs;\n' +
      "with --publish, writes the record to the labeler's repository.",
    options: DECLARE_OPTIONS,
    run: (parsed) => declare(config(), parsed),
  }),
}

process.exit(await runCli('labeler', COMMANDS, process.argv.slice(2)))
