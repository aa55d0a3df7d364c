// Runs the local stack in the foreground: applies migrations (creating the database when
// missing), starts the five services as child processes, prints where each listens once
// all are ready, relays their logs, and on Ctrl-C (or SIGTERM) stops them all cleanly.
// Started by scripts/start.sh; the services' config comes from the same environment.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { redactUrl, runMigrations } from '@atmos/db'
import { SERVICES } from './services.ts'

const databaseUrl = process.env.ATMOS_DATABASE_URL ?? 'postgres://root@127.0.0.1:5432/atmos'
/** Shifts every service's ops port, so that two stacks (or a test) can run side by side. */
const portOffset = Number(process.env.ATMOS_STACK_PORT_OFFSET ?? 0)
const quiet = process.env.ATMOS_STACK_QUIET === '1'

function say(text: string) {
  process.stdout.write(`stack: ${text}\n`)
}

const migrated = await runMigrations(databaseUrl, { createDatabase: true }).catch((err: Error) => {
  say(`migration failed on ${redactUrl(databaseUrl)}: ${err.message}`)
  process.exit(1)
})
say(`database ${redactUrl(databaseUrl)}: ${migrated.applied} migrations applied, ${migrated.total} in all`)

// The labeler signs with a key of its own; create it on first start (never overwritten).
const labelerCli = fileURLToPath(new URL('../../../services/labeler/src/cli.ts', import.meta.url))
try {
  say(execFileSync(process.execPath, [labelerCli, 'init'], { encoding: 'utf8' }).trim().replace(/\n/g, ': '))
} catch (err) {
  say(`labeler init failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`)
  process.exit(1)
}

type Running = { name: string; child: ChildProcess; ops?: string; exited: Promise<number | null> }
let stopping = false

const running: Running[] = SERVICES.map((service) => {
  const child = spawn(process.execPath, [service.entry], {
    env: {
      ...process.env,
      ATMOS_HTTP_PORT: String(service.port + portOffset),
      ATMOS_LABELER_XRPC_PORT: process.env.ATMOS_LABELER_XRPC_PORT ?? String(2583 + portOffset),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    // A group of its own: Ctrl-C in the terminal reaches only the stack, which then stops
    // each service once with SIGTERM (a second signal would skip the service's drain).
    detached: true,
  })
  const entry: Running = {
    name: service.name,
    child,
    exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
  }
  createInterface({ input: child.stdout! }).on('line', (line) => onLog(entry, line))
  createInterface({ input: child.stderr! }).on('line', (line) =>
    process.stderr.write(`${service.name.padEnd(10)} ${line}\n`),
  )
  entry.exited.then((code) => {
    if (!stopping) {
      say(`${service.name} exited unexpectedly (code ${code}); stopping the stack`)
      void stopAll(1)
    }
  })
  return entry
})

const started = new Set<string>()
function onLog(entry: Running, line: string) {
  let parsed: { msg?: string; level?: string; http?: string } = {}
  try {
    parsed = JSON.parse(line)
  } catch {}
  if (parsed.msg === 'ops endpoint listening') entry.ops = parsed.http
  if (!quiet) process.stdout.write(`${entry.name.padEnd(10)} ${line}\n`)
  if (parsed.msg === 'started' && !started.has(entry.name)) {
    started.add(entry.name)
    if (started.size === running.length) printReady()
  }
}

function printReady() {
  say('all services started:')
  for (const r of running) say(`  ${r.name.padEnd(10)} ops ${r.ops}  (GET /healthz /readyz /metrics)`)
  say('press Ctrl-C to stop')
}

async function stopAll(exitCode: number) {
  if (stopping) return
  stopping = true
  say('stopping all services')
  for (const r of running) if (r.child.exitCode === null) r.child.kill('SIGTERM')
  const codes = await Promise.all(running.map((r) => r.exited))
  const failed = running.filter((_, i) => codes[i] !== 0 && codes[i] !== null)
  for (const r of failed) say(`${r.name} did not stop cleanly (exit ${r.child.exitCode})`)
  say('stopped')
  process.exit(exitCode || (failed.length ? 1 : 0))
}

process.on('exit', () => {
  for (const r of running) if (r.child.exitCode === null) r.child.kill('SIGTERM')
})
process.on('SIGINT', () => void stopAll(0))
process.on('SIGTERM', () => void stopAll(0))
