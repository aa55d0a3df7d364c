// The test command typechecks the workspace as one program (the root tsconfig.json) instead of
// each package on its own: that is only as strict as it covers every file a package's own
// tsconfig.json would check. A package or folder added later without a root include fails here.
import assert from 'node:assert/strict'
import { readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { it } from 'node:test'
import { fileURLToPath } from 'node:url'
// The workspace's own compiler (a root devDependency), only to read tsconfig files as tsc does.
import ts from 'typescript'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** The files a tsconfig.json selects, as tsc resolves its extends and include globs. */
function filesOf(configPath: string): string[] {
  const read = ts.readConfigFile(configPath, ts.sys.readFile)
  assert.equal(read.error, undefined, `${configPath}: ${JSON.stringify(read.error?.messageText)}`)
  const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, dirname(configPath))
  assert.deepEqual(parsed.errors, [], configPath)
  return parsed.fileNames
}

/** Every workspace package's tsconfig.json (the folders pnpm-workspace.yaml names). */
function packageConfigs(): string[] {
  const out: string[] = []
  for (const group of ['packages', 'services', 'tools']) {
    for (const name of readdirSync(join(ROOT, group))) out.push(join(ROOT, group, name, 'tsconfig.json'))
  }
  for (const single of ['e2e', 'infra', 'bench']) out.push(join(ROOT, single, 'tsconfig.json'))
  return out.filter((p) => ts.sys.fileExists(p))
}

it("the root tsconfig.json covers every file of every package's own tsconfig.json", () => {
  const root = new Set(filesOf(join(ROOT, 'tsconfig.json')))
  const configs = packageConfigs()
  assert.ok(configs.length >= 20, `only ${configs.length} package tsconfigs found: the walk is broken`)
  const missing: string[] = []
  for (const config of configs) {
    for (const file of filesOf(config)) if (!root.has(file)) missing.push(file.slice(ROOT.length))
  }
  assert.deepEqual(missing, [], 'add their folders to the root tsconfig.json include')
})
