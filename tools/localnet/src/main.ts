// The local network as its own process, as the stack runs it (tools/stack/src/stack.ts):
// one JSON line when it is ready (what the stack gives the services and prints, the demo
// account's password included: a local demo credential), then it runs until SIGTERM or
// until its parent is gone (the stack preloads parent-watch.ts).
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { redactUrl } from '@atmos/db'
import { LocalNetwork } from './network.ts'
import { NetworkSettingsError, networkSettings } from './settings.ts'

function log(level: string, msg: string, fields: Record<string, unknown> = {}) {
  process.stdout.write(`${JSON.stringify({ level, time: Date.now(), name: 'localnet', msg, ...fields })}\n`)
}

let settings: ReturnType<typeof networkSettings>
try {
  settings = networkSettings(process.env)
} catch (err) {
  if (!(err instanceof NetworkSettingsError)) throw err
  log('fatal', err.message)
  process.exit(2)
}

const network = new LocalNetwork(settings)
let stopping = false
async function stop(code: number) {
  if (stopping) return
  stopping = true
  try {
    await network.stop()
    log('info', 'stopped')
  } catch (err) {
    log('error', 'stop failed', { err: (err as Error).message })
    code ||= 1
  }
  process.exit(code)
}
process.on('SIGTERM', () => void stop(0))
process.on('SIGINT', () => void stop(0))

try {
  const info = await network.start()
  // The CLI finds the running network's pages here.
  writeFileSync(join(settings.stateDir, 'web-url'), `${info.webUrl}\n`)
  log('info', 'local network ready', { ...info, plcDatabase: redactUrl(settings.plcDatabaseUrl) })
} catch (err) {
  log('fatal', 'local network failed to start', { err: (err as Error).message })
  await stop(1)
}
