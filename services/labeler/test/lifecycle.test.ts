import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSigningKeyFile } from '@atmos/labels'
import { describeServiceLifecycle } from '@atmos/testkit'

describeServiceLifecycle('labeler', new URL('../src/index.ts', import.meta.url), {
  env: async () => {
    const keyFile = join(mkdtempSync(join(tmpdir(), 'atmos-labeler-')), 'label-signing.key')
    await createSigningKeyFile(keyFile)
    return { ATMOS_LABELER_SIGNING_KEY_FILE: keyFile, ATMOS_LABELER_XRPC_PORT: '0' }
  },
  // Readiness without Redis: see src/context.ts.
  redis: 'degraded',
})
