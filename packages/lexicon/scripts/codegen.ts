// Regenerates src/generated/ from lexicons/ with @atproto/lex-cli, then adapts the output
// to how this repo runs TypeScript (Node's type stripping resolves the real file name, so
// relative imports must end in .ts, not .js). `--check DIR` writes to DIR instead, for the
// test that proves the checked-in code matches the schemas.
import { execFileSync } from 'node:child_process'
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = fileURLToPath(new URL('..', import.meta.url))
const lexiconRoot = join(here, '../../lexicons')
const checkIndex = process.argv.indexOf('--check')
const outDir = checkIndex >= 0 ? (process.argv[checkIndex + 1] as string) : join(here, 'src/generated')

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? walk(path) : [path]
  })
}

const schemas = walk(lexiconRoot)
  .filter((f) => f.endsWith('.json'))
  .sort()
const scratch = mkdtempSync(join(tmpdir(), 'atmos-lex-'))
try {
  execFileSync(join(here, 'node_modules/.bin/lex'), ['gen-server', '--yes', scratch, ...schemas], {
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  // index.ts is an XRPC server skeleton; the services build their own servers.
  rmSync(join(scratch, 'index.ts'))
  for (const file of walk(scratch)) {
    const text = readFileSync(file, 'utf8').replace(/from '(\.{1,2}\/[^']+)\.js'/g, "from '$1.ts'")
    writeFileSync(file, text)
  }
  rmSync(outDir, { recursive: true, force: true })
  cpSync(scratch, outDir, { recursive: true })
  console.log(
    `generated ${walk(outDir).length} files from ${schemas.length} lexicons into ${relative(process.cwd(), outDir) || '.'}`,
  )
} finally {
  rmSync(scratch, { recursive: true, force: true })
}
