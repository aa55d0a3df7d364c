// Operator commands (`pnpm --filter @atmos/labeler labeler <command>`, or `node src/cli.ts`):
//
//   init                       create the label signing key (mode 0600) if it is missing and
//                              print its did:key; an existing key is never overwritten
//   verify <did-or-domain>     run every check now and print the report; exit 0 only if all
//          [--did D --selector S ...]   pass (1: a check failed, 75: DNS could not answer).
//                              --did/--selector check a domain that has no attestation yet
//   declare [--publish --pds URL --identifier HANDLE]
//                              print the app.bsky.labeler.service record and the DID document
//                              entries; with --publish, write the record to the labeler's
//                              repository (password from ATMOS_LABELER_ACCOUNT_PASSWORD)
import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { ConfigError, loadConfig } from '@atmos/config'
import { attestations, createDb } from '@atmos/db'
import { createSigningKeyFile, loadSigningKeyFile } from '@atmos/labels'
import { verifyAttestation } from '@atmos/verify'
import { AtpAgent } from '@atproto/api'
import { and, eq, or } from 'drizzle-orm'
import { type LabelerConfig, labelerConfigSchema } from './config.ts'
import { didDocumentChanges, labelerServiceRecord } from './labels/declaration.ts'
import { createVerifyDeps } from './verify/deps.ts'

const EX_USAGE = 64
const EX_TEMPFAIL = 75

class UsageError extends Error {}

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

async function verify(config: LabelerConfig, args: string[]) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { did: { type: 'string' }, selector: { type: 'string', multiple: true } },
  })
  const target = positionals[0]?.toLowerCase()
  if (!target) throw new UsageError('usage: labeler verify <did-or-domain> [--did DID --selector SEL ...]')
  let input: { did: string; domain: string; dkimSelectors: string[] }
  if (values.did && values.selector?.length) {
    input = { did: values.did, domain: target, dkimSelectors: values.selector }
  } else {
    const db = createDb({ url: config.database.url, poolMax: 1 })
    try {
      const [att] = await db
        .select()
        .from(attestations)
        .where(
          and(
            or(eq(attestations.did, positionals[0]!), eq(attestations.domain, target)),
            eq(attestations.deleted, false),
            eq(attestations.state, 'valid'),
          ),
        )
      if (!att?.domain) {
        throw new UsageError(
          `no live attestation for ${target}; to check a domain before it is attested, pass --did and --selector`,
        )
      }
      input = { did: att.did, domain: att.domain, dkimSelectors: att.dkimSelectors }
    } finally {
      await db.$client.end()
    }
  }
  const result = await verifyAttestation(input, createVerifyDeps(config))
  console.log(`${input.domain} (${input.did}): ${result.outcome.toUpperCase()} — ${result.reason}`)
  for (const c of result.checks) {
    console.log(`  ${c.check.padEnd(15)} ${c.outcome.padEnd(9)} ${c.reason}`)
    for (const w of c.warnings) console.log(`  ${''.padEnd(15)} warning   ${w}`)
  }
  return result.outcome === 'pass' ? 0 : result.outcome === 'fail' ? 1 : EX_TEMPFAIL
}

async function declare(config: LabelerConfig, args: string[]) {
  const { values } = parseArgs({
    args,
    options: { publish: { type: 'boolean', default: false }, pds: { type: 'string' }, identifier: { type: 'string' } },
  })
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

const [command, ...rest] = process.argv.slice(2)
try {
  const config = loadConfig(labelerConfigSchema)
  const code =
    command === 'init'
      ? await init(config)
      : command === 'verify'
        ? await verify(config, rest)
        : command === 'declare'
          ? await declare(config, rest)
          : (() => {
              throw new UsageError('usage: labeler init | verify <did-or-domain> | declare [--publish ...]')
            })()
  process.exit(code)
} catch (err) {
  const message = err instanceof ConfigError || err instanceof UsageError ? err.message : (err as Error).message
  console.error(`labeler ${command ?? ''}: ${message}`)
  process.exit(err instanceof UsageError ? EX_USAGE : 1)
}
