import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export type LogLine = Record<string, unknown> & { msg?: string; level?: string }

export type Exit = { code: number | null; signal: NodeJS.Signals | null }

/** A service (or any Node entry point) run as a real child process, its JSON log parsed. */
export class ServiceProcess {
  readonly child: ChildProcess
  readonly logs: LogLine[] = []
  stderr = ''
  readonly exited: Promise<Exit>
  private waiters: Array<{ match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }> = []

  constructor(entry: string | URL, env: Record<string, string>, args: string[] = []) {
    const file = entry instanceof URL ? fileURLToPath(entry) : entry
    this.child = spawn(process.execPath, [file, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let buffered = ''
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk
      let nl = buffered.indexOf('\n')
      while (nl >= 0) {
        this.onLine(buffered.slice(0, nl))
        buffered = buffered.slice(nl + 1)
        nl = buffered.indexOf('\n')
      }
    })
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk
    })
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => resolve({ code, signal }))
    })
  }

  private onLine(text: string) {
    let line: LogLine
    try {
      line = JSON.parse(text) as LogLine
    } catch {
      line = { msg: text, unparsed: true }
    }
    this.logs.push(line)
    this.waiters = this.waiters.filter((w) => {
      if (!w.match(line)) return true
      w.resolve(line)
      return false
    })
  }

  /**
   * Resolves with the first log line (seen or to come) that matches; rejects on exit or timeout.
   * The deadline is a backstop, not a measure: a process started while the machine runs every
   * other test file can take many seconds to load, so the default is generous.
   */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs = 60_000): Promise<LogLine> {
    const seen = this.logs.find(match)
    if (seen) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no matching log line within ${timeoutMs} ms:\n${this.dump()}`)),
        timeoutMs,
      )
      this.waiters.push({
        match,
        resolve: (line) => {
          clearTimeout(timer)
          resolve(line)
        },
      })
      this.exited.then((exit) => {
        clearTimeout(timer)
        reject(new Error(`process exited (${JSON.stringify(exit)}) before the log line:\n${this.dump()}`))
      })
    })
  }

  /** The ops endpoint's base URL, once the service logged it. */
  async opsUrl(timeoutMs?: number): Promise<string> {
    const line = await this.waitForLog((l) => l.msg === 'ops endpoint listening', timeoutMs)
    return String(line.http)
  }

  /** Sends the signal and waits for the exit, measuring how long it took. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<Exit & { ms: number }> {
    const started = Date.now()
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal)
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs)
    const exit = await this.exited
    clearTimeout(timer)
    return { ...exit, ms: Date.now() - started }
  }

  dump(): string {
    return [...this.logs.map((l) => JSON.stringify(l)), this.stderr].join('\n')
  }
}

export type CliResult = { code: number | null; out: string; err: string }

/**
 * Runs a Node entry point (an operator CLI) to its end as its own process, collecting its
 * output. It never blocks this process, so peers the command talks to (a DNS server, say)
 * can live in the test.
 */
export function runCli(entry: string | URL, args: string[], env: Record<string, string>): Promise<CliResult> {
  const file = entry instanceof URL ? fileURLToPath(entry) : entry
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file, ...args], { env: { ...process.env, ...env } })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => {
      out += d
    })
    child.stderr.on('data', (d) => {
      err += d
    })
    child.on('close', (code) => resolve({ code, out, err }))
  })
}
