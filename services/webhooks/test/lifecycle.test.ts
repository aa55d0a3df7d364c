import { writeFileSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { newKekLine } from '@atmos/secrets'
import { describeServiceLifecycle } from '@atmos/testkit'

describeServiceLifecycle('webhooks', new URL('../src/index.ts', import.meta.url), {
  // The outbox is Postgres and nothing else: see src/context.ts.
  redis: 'degraded',
  env: async () => {
    const kekFile = join(await mkdtemp(join(tmpdir(), 'atmos-webhooks-')), 'kek')
    writeFileSync(kekFile, `${newKekLine()}\n`, { mode: 0o600 })
    return { ATMOS_WEBHOOKS_KEK_FILE: kekFile }
  },
})
