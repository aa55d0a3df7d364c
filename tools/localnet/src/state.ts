import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'

// The network's state directory (`.state/localnet/` under the stack): what must survive a
// restart so that the demo account keeps its DID and password, and published records stay.

/** A secret kept in a file of mode 0600, created once with `make` and never rewritten. */
export function secretFile(
  dir: string,
  name: string,
  make: () => string = () => randomBytes(24).toString('hex'),
): string {
  const path = join(dir, name)
  if (existsSync(path)) {
    // A file left readable by others by hand is tightened, not trusted as it is.
    chmodSync(path, 0o600)
    return readFileSync(path, 'utf8').trim()
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const value = make()
  writeFileSync(path, `${value}\n`, { mode: 0o600, flag: 'wx' })
  return value
}

/** JSON written whole through a temporary file, so that a crash never leaves half of it. */
export function writeJson(path: string, value: unknown, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  const tmp = `${path}.${process.pid}.tmp`
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode })
  renameSync(tmp, path)
}

export function readJson<T>(path: string, fallback: T): T {
  if (!existsSync(path)) return fallback
  return JSON.parse(readFileSync(path, 'utf8')) as T
}
