// Preloaded (`node --import`) by cli-help.test.ts: on exit, writes every module the process
// resolved, one URL a line, to $ATMOS_TEST_LOAD_TRACE, so that the test can tell what a
// `--help` loaded.
import { writeFileSync } from 'node:fs'
import { registerHooks } from 'node:module'

const file = process.env.ATMOS_TEST_LOAD_TRACE
if (file) {
  const urls = new Set<string>()
  registerHooks({
    resolve(specifier, context, next) {
      const resolved = next(specifier, context)
      urls.add(resolved.url)
      return resolved
    },
  })
  process.on('exit', () => writeFileSync(file, [...urls].join('\n')))
}
