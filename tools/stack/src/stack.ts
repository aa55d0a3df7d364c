// Runs the local stack in the foreground: checks the configuration and that every port is
// free, applies migrations (creating the database when missing), starts the six services
// as child processes, prints every listener once all are ready, relays their logs, and on
// Ctrl-C, SIGTERM or a closed terminal (SIGHUP) stops them all cleanly. If the stack itself
// is killed outright, each service notices its stdin pipe close and stops (parent-watch.ts).
// Started by scripts/start.sh; the services' config comes from the same environment.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { redactUrl, runMigrations } from '@atmos/db'
import {
  NETWORK_ENTRY,
  type NetworkPlan,
  type NetworkReady,
  networkSummary,
  networkWanted,
  planNetwork,
} from './network.ts'
import { type PlannedService, planServices, portOffset, StackConfigError } from './plan.ts'
import { portProblems } from './ports.ts'
import { formatListener, type LoggedListener, listenerFromLog } from './summary.ts'
import { ensureSelfSignedCertificate } from './tls.ts'

const databaseUrl = process.env.ATMOS_DATABASE_URL ?? 'postgres://root@127.0.0.1:5432/atmos'
const quiet = process.env.ATMOS_STACK_QUIET === '1'

// A closed terminal makes every write fail; the stack must still stop its services.
process.stdout.on('error', () => {})
process.stderr.on('error', () => {})

function say(text: string) {
  process.stdout.write(`stack: ${text}\n`)
}

type Running = { name: string; child: ChildProcess; listeners: LoggedListener[]; exited: Promise<number | null> }
let running: Running[] = []
let stopping = false

async function stopAll(exitCode: number) {
  if (stopping) return
  stopping = true
  say('stopping all services')
  for (const r of running) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGTERM')
  const codes = await Promise.all(running.map((r) => r.exited))
  const failed = running.filter((_, i) => codes[i] !== 0 && codes[i] !== null)
  for (const r of failed) say(`${r.name} did not stop cleanly (exit ${r.child.exitCode})`)
  say('stopped')
  process.exit(exitCode || (failed.length ? 1 : 0))
}

process.on('exit', () => {
  for (const r of running) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGTERM')
})
process.on('SIGINT', () => void stopAll(0))
process.on('SIGTERM', () => void stopAll(0))
// The terminal closed: without this Node's default would end the stack alone.
process.on('SIGHUP', () => void stopAll(0))

// Relay and fbl-ingest share the pool's identity: the token secret that `relay keys init`
// creates is the one fbl-ingest verifies bounces with, and so on for every pool field; the
// pool's KEK too (fbl-ingest signs forwards as the pool), never the relay's.
const POOL_FIELDS = ['DOMAIN', 'BOUNCE_DOMAIN', 'VERP_PREFIX', 'FEEDBACK_SENDER_ID', 'TOKEN_SECRET_FILE', 'KEK_FILE']
const poolEnv: Record<string, string> = {}
for (const f of POOL_FIELDS) {
  const value = process.env[`ATMOS_RELAY_POOL_${f}`] ?? process.env[`ATMOS_FBL_INGEST_POOL_${f}`]
  if (value !== undefined) {
    poolEnv[`ATMOS_RELAY_POOL_${f}`] = value
    poolEnv[`ATMOS_FBL_INGEST_POOL_${f}`] = value
  }
}
const certFile = process.env.ATMOS_RELAY_SUBMISSION_TLS_CERT_FILE ?? '.state/relay/tls.crt'
const keyFile = process.env.ATMOS_RELAY_SUBMISSION_TLS_KEY_FILE ?? '.state/relay/tls.key'

let planned: PlannedService[]
let network: NetworkPlan | undefined
try {
  if (networkWanted(process.argv.slice(2), process.env))
    network = planNetwork({ ...process.env, ...poolEnv }, portOffset(process.env))
  planned = planServices({
    ...network?.serviceDefaults,
    ...process.env,
    ...poolEnv,
    ATMOS_RELAY_SUBMISSION_TLS_CERT_FILE: certFile,
    ATMOS_RELAY_SUBMISSION_TLS_KEY_FILE: keyFile,
  })
} catch (err) {
  if (!(err instanceof StackConfigError)) throw err
  say(`invalid configuration, nothing started:\n  ${err.message.replace(/\n/g, '\n  ')}`)
  process.exit(2)
}
const envOf = (name: string) => planned.find((s) => s.name === name)!.env

const taken = await portProblems([...(network?.listeners ?? []), ...planned.flatMap((s) => s.listeners)])
if (taken.length) {
  for (const problem of taken) say(problem)
  say('nothing started')
  process.exit(1)
}

const migrated = await runMigrations(databaseUrl, { createDatabase: true }).catch((err: Error) => {
  say(`migration failed on ${redactUrl(databaseUrl)}: ${err.message}`)
  process.exit(1)
})
say(`database ${redactUrl(databaseUrl)}: ${migrated.applied} migrations applied, ${migrated.total} in all`)

// The labeler signs with a key of its own; create it on first start (never overwritten).
const labelerCli = fileURLToPath(new URL('../../../services/labeler/src/cli.ts', import.meta.url))
try {
  say(
    execFileSync(process.execPath, [labelerCli, 'init'], { encoding: 'utf8', env: envOf('labeler') })
      .trim()
      .replace(/\n/g, ': '),
  )
} catch (err) {
  say(`labeler init failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`)
  process.exit(1)
}

// The relay's submission needs a certificate for STARTTLS, and its and the pool's
// key-encryption keys, token secret and pool DKIM key (`relay keys init`, which never
// overwrites anything).
try {
  if (ensureSelfSignedCertificate(certFile, keyFile))
    say(`created a self-signed certificate ${certFile} for submission`)
} catch (err) {
  say(`relay certificate: ${(err as Error).message}`)
  process.exit(1)
}
const relayCli = fileURLToPath(new URL('../../../services/relay/src/cli.ts', import.meta.url))
try {
  const out = execFileSync(process.execPath, [relayCli, 'keys', 'init'], {
    encoding: 'utf8',
    env: envOf('relay'),
  }).trim()
  for (const line of out.split('\n')) say(`relay keys: ${line}`)
} catch (err) {
  say(`relay keys init failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`)
  process.exit(1)
}

// The admin's atproto sign-in needs its key-encryption key and OAuth client keys
// (`admin oauth init`, which never overwrites either): without them sign-in is off.
const adminCli = fileURLToPath(new URL('../../../services/admin/src/cli.ts', import.meta.url))
try {
  const out = execFileSync(process.execPath, [adminCli, 'oauth', 'init'], {
    encoding: 'utf8',
    env: envOf('admin'),
  }).trim()
  for (const line of out.split('\n')) say(`admin oauth: ${line}`)
} catch (err) {
  say(`admin oauth init failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`)
  process.exit(1)
}

// Endpoint secrets are sealed under a key file the admin and the webhooks service share
// (`webhooks key init`, which never overwrites it).
const webhooksCli = fileURLToPath(new URL('../../../services/webhooks/src/cli.ts', import.meta.url))
try {
  const out = execFileSync(process.execPath, [webhooksCli, 'key', 'init'], {
    encoding: 'utf8',
    env: envOf('webhooks'),
  }).trim()
  for (const line of out.split('\n')) say(`webhooks key: ${line}`)
} catch (err) {
  say(`webhooks key init failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`)
  process.exit(1)
}

const parentWatch = new URL('./parent-watch.ts', import.meta.url).href
let onNetworkReady: ((ready: NetworkReady) => void) | undefined
const started = new Set<string>()

function spawnWatched(name: string, entry: string, env: Record<string, string | undefined>): Running {
  const child = spawn(process.execPath, ['--import', parentWatch, entry], {
    env,
    // stdin: the pipe parent-watch.ts watches; the stack never writes to it.
    stdio: ['pipe', 'pipe', 'pipe'],
    // A group of its own: Ctrl-C in the terminal reaches only the stack, which then stops
    // each child once with SIGTERM (a second signal would skip the service's drain).
    detached: true,
  })
  const running: Running = {
    name,
    child,
    listeners: [],
    exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
  }
  createInterface({ input: child.stdout! }).on('line', (line) => onLog(running, line))
  createInterface({ input: child.stderr! }).on('line', (line) => process.stderr.write(`${name.padEnd(10)} ${line}\n`))
  running.exited.then((code) => {
    if (!stopping) {
      say(`${name} exited unexpectedly (code ${code}); stopping the stack`)
      void stopAll(1)
    }
  })
  return running
}

// The local network comes after the relay's keys (its DNS publishes the pool's DKIM key)
// and before the services, which are pointed at it.
let networkReady: NetworkReady | undefined
if (network && !stopping) {
  const fbl = envOf('fbl-ingest')
  const entry = spawnWatched('localnet', NETWORK_ENTRY, {
    ...network.env,
    ATMOS_DATABASE_URL: databaseUrl,
    ATMOS_FBL_INGEST_SMTP_HOST: fbl.ATMOS_FBL_INGEST_SMTP_HOST,
    ATMOS_FBL_INGEST_SMTP_PORT: fbl.ATMOS_FBL_INGEST_SMTP_PORT,
  })
  running = [entry]
  say('starting the local network (PLC, PDS, DNS, sink MX)')
  networkReady = await new Promise<NetworkReady | undefined>((resolve) => {
    onNetworkReady = resolve
    entry.exited.then(() => resolve(undefined))
  })
  if (!networkReady) {
    // Its exit has already stopped the stack; its log said why.
    await new Promise(() => {})
  }
}

if (!stopping)
  running = [...running, ...planned.map((service) => spawnWatched(service.name, service.entry, service.env))]

function onLog(entry: Running, line: string) {
  let parsed: Record<string, unknown> = {}
  try {
    parsed = JSON.parse(line)
  } catch {}
  if (entry.name === 'localnet' && parsed.msg === 'local network ready') {
    started.add(entry.name)
    onNetworkReady?.(parsed as unknown as NetworkReady)
    // The ready line holds the demo password: the summary prints it once, not the log too.
    return
  }
  const listener = listenerFromLog(parsed)
  if (listener) entry.listeners.push(listener)
  // Quiet keeps errors: a service that cannot start must say why (a port taken since the check).
  if (!quiet || parsed.level === 'error' || parsed.level === 'fatal')
    process.stdout.write(`${entry.name.padEnd(10)} ${line}\n`)
  if (parsed.msg === 'started' && !started.has(entry.name)) {
    started.add(entry.name)
    if (started.size === running.length) printReady()
  }
}

function printReady() {
  say('all services started:')
  for (const r of running) for (const l of r.listeners) say(`  ${r.name.padEnd(10)} ${formatListener(l)}`)
  if (networkReady) for (const line of networkSummary(networkReady)) say(line)
  say('press Ctrl-C to stop')
}
