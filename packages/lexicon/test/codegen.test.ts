import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { it } from 'node:test'
import { fileURLToPath } from 'node:url'

const pkg = fileURLToPath(new URL('..', import.meta.url))

function files(dir: string): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name)
      if (statSync(p).isDirectory()) walk(p)
      else out.set(relative(dir, p), readFileSync(p, 'utf8'))
    }
  }
  walk(dir)
  return out
}

it('the checked-in generated code matches lexicons/ (run `pnpm codegen` after editing a schema)', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'atmos-lex-check-'))
  try {
    execFileSync(process.execPath, [join(pkg, 'scripts/codegen.ts'), '--check', scratch], { stdio: 'pipe' })
    assert.deepEqual(files(scratch), files(join(pkg, 'src/generated')))
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
})
