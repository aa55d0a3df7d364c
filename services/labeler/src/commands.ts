// What the labeler's operator commands do once their arguments are settled. src/cli.ts
// imports this module only when a command runs, so that help and usage errors load the
// argument parser alone.
import { existsSync } from 'node:fs'
import { loadConfig, UsageError } from '@atmos/config'
import { attestations, createDb, verificationStatus } from '@atmos/db'
import { createSigningKeyFile, loadSigningKeyFile } from '@atmos/labels'
import { verifyAttestation } from '@atmos/verify'
import { AtpAgent } from '@atproto/api'
import { and, asc, eq, isNotNull, or } from 'drizzle-orm'
import { labelerConfigSchema } from './config.ts'
import { didDocumentChanges, labelerServiceRecord } from './labels/declaration.ts'
import { createVerifyDeps } from './verify/deps.ts'

const EX_TEMPFAIL = 75

/** `labeler init`. */
export async function init(): Promise<number> {
  const config = loadConfig(labelerConfigSchema)
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

/**
 * `labeler verify`: `subject` is a DID or a domain; `unattested` checks a domain for a DID
 * without an attestation (cli.ts has checked that both or neither of --did and --selector came).
 */
export async function verify(subject: string, unattested?: { did: string; selectors: string[] }): Promise<number> {
  const config = loadConfig(labelerConfigSchema)
  const target = subject.toLowerCase()
  let inputs: Array<{ did: string; domain: string; dkimSelectors: string[]; standing?: Standing; heldBy?: string }>
  if (unattested) {
    inputs = [{ did: unattested.did, domain: target, dkimSelectors: unattested.selectors }]
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
            or(eq(attestations.did, subject), eq(attestations.domain, target)),
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

/** `labeler declare`: prints the records; with `publish`, also writes the service record to the account. */
export async function declare(publish?: { pds: string; identifier: string; password: string }): Promise<number> {
  const config = loadConfig(labelerConfigSchema)
  const keypair = await loadSigningKeyFile(config.labeler.signingKeyFile)
  const did = config.labeler.did || keypair.did()
  const record = labelerServiceRecord()
  console.log('app.bsky.labeler.service record (rkey "self"):')
  console.log(JSON.stringify(record, null, 2))
  console.log(`\nDID document of ${did} (a PLC operation for did:plc):`)
  console.log(JSON.stringify(didDocumentChanges(did, keypair.did(), config.labeler.publicUrl), null, 2))
  if (!publish) return 0
  const agent = new AtpAgent({ service: publish.pds })
  await agent.login({ identifier: publish.identifier, password: publish.password })
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
