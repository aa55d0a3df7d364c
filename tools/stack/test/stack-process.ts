// Test helpers: the stack as a child process (the README's start command or the stack
// script itself), its output, and the services it started, watched through /proc.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TEST_REDIS_URL, testRedisPrefix } from '@atmos/testkit'

export const startScript = fileURLToPath(new URL('../../../scripts/start.sh', import.meta.url))
export const stackScript = fileURLToPath(new URL('../src/stack.ts', import.meta.url))

export type StackProcess = {
  child: ChildProcessWithoutNullStreams
  output: () => string
  exited: Promise<number | null>
  /** Resolves once the output holds `text`; fails on exit or after `ms`. */
  waitFor: (text: string, ms?: number) => Promise<void>
  /** SIGINT, then the group's SIGKILL if it does not finish: for after(). */
  stop: () => Promise<void>
}

/** An environment of its own: state files in a temporary directory, ports shifted by a random offset. */
export function stackEnv(databaseUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  const state = mkdtempSync(join(tmpdir(), 'atmos-stack-'))
  const env: Record<string, string | undefined> = {
    ...process.env,
    ATMOS_DATABASE_URL: databaseUrl,
    ATMOS_REDIS_URL: TEST_REDIS_URL,
    ATMOS_REDIS_PREFIX: testRedisPrefix('stack'),
    ATMOS_STACK_PORT_OFFSET: String(1000 + Math.floor(Math.random() * 20_000)),
    ATMOS_STACK_QUIET: '1',
    ATMOS_LABELER_SIGNING_KEY_FILE: join(state, 'label-signing.key'),
    ATMOS_RELAY_KEK_FILE: join(state, 'relay', 'kek'),
    ATMOS_RELAY_POOL_TOKEN_SECRET_FILE: join(state, 'pool', 'token.secret'),
    ATMOS_RELAY_POOL_KEK_FILE: join(state, 'pool', 'kek'),
    ATMOS_RELAY_SUBMISSION_TLS_CERT_FILE: join(state, 'relay', 'tls.crt'),
    ATMOS_RELAY_SUBMISSION_TLS_KEY_FILE: join(state, 'relay', 'tls.key'),
    ATMOS_ADMIN_KEK_FILE: join(state, 'admin', 'kek'),
    ATMOS_ADMIN_OAUTH_KEYS_FILE: join(state, 'admin', 'oauth-keys.json'),
    ATMOS_LOCALNET_STATE_DIR: join(state, 'localnet'),
    // The services alone unless a test asks for the local network (start.test.ts does).
    ATMOS_STACK_NETWORK: 'off',
    ...extra,
  }
  // The test runner's own ATMOS_HTTP_PORT (if any) is not the stack's business.
  delete env.ATMOS_HTTP_PORT
  if (extra.ATMOS_HTTP_PORT !== undefined) env.ATMOS_HTTP_PORT = extra.ATMOS_HTTP_PORT
  return env as Record<string, string>
}

/** Starts `bash start.sh` or `node stack.ts` in a process group of its own. */
export function startStack(
  env: Record<string, string>,
  how: 'start.sh' | 'stack.ts' = 'start.sh',
  argv: string[] = [],
): StackProcess {
  const [cmd, args] = how === 'start.sh' ? ['bash', [startScript, ...argv]] : [process.execPath, [stackScript, ...argv]]
  const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true })
  let out = ''
  const waiters = new Set<() => void>()
  const onData = (d: Buffer) => {
    out += d
    for (const w of waiters) w()
  }
  child.stdout.on('data', onData)
  child.stderr.on('data', onData)
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  exited.then(() => {
    for (const w of waiters) w()
  })
  const waitFor = (text: string, ms = 120_000) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`no "${text}" within ${ms} ms:\n${out}`)), ms)
      const check = () => {
        if (out.includes(text)) done()
        else if (child.exitCode !== null || child.signalCode !== null)
          done(new Error(`the stack exited (${child.exitCode ?? child.signalCode}) before "${text}":\n${out}`))
      }
      const done = (err?: Error) => {
        clearTimeout(timer)
        waiters.delete(check)
        err ? reject(err) : resolve()
      }
      waiters.add(check)
      check()
    })
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    process.kill(child.pid!, 'SIGINT')
    const timer = new Promise((r) => setTimeout(() => r(false), 30_000))
    if (!(await Promise.race([exited.then(() => true), timer]))) process.kill(-child.pid!, 'SIGKILL')
  }
  return { child, output: () => out, exited, waitFor, stop }
}

/** Pids whose parent is `pid`, from /proc. */
export function childrenOf(pid: number): number[] {
  const found: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = readStat(Number(entry))
    if (stat?.ppid === pid) found.push(Number(entry))
  }
  return found
}

/** Exited (gone, or a zombie nobody has reaped yet). */
export function hasExited(pid: number): boolean {
  const stat = readStat(pid)
  return !stat || stat.state === 'Z'
}

function readStat(pid: number): { state: string; ppid: number } | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // "pid (comm) state ppid …"; comm may hold spaces and parentheses.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return { state: fields[0]!, ppid: Number(fields[1]) }
}

/** Waits until every pid has exited; returns those still running after `ms`. */
export async function waitForExit(pids: number[], ms: number): Promise<number[]> {
  const deadline = Date.now() + ms
  for (;;) {
    const alive = pids.filter((p) => !hasExited(p))
    if (!alive.length || Date.now() > deadline) return alive
    await new Promise((r) => setTimeout(r, 100))
  }
}
