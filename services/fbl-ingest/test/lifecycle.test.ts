import { describeServiceLifecycle } from '@atmos/testkit'
import { tokenSecretFile } from './helpers.ts'

// Port 25 needs root and the default secret path holds no secret in a test: a free port
// and a fresh secret file, everything else the defaults.
describeServiceLifecycle('fbl-ingest', new URL('../src/index.ts', import.meta.url), {
  env: () => ({
    ATMOS_FBL_INGEST_SMTP_HOST: '127.0.0.1',
    ATMOS_FBL_INGEST_SMTP_PORT: '0',
    ATMOS_FBL_INGEST_POOL_TOKEN_SECRET_FILE: tokenSecretFile().path,
  }),
  // Readiness without Redis: see src/context.ts.
  redis: 'degraded',
})
