import { describeServiceLifecycle } from '@atmos/testkit'
import { relayFiles } from './helpers.ts'

// Submission needs its certificate, KEK and token secret files to start; a free port
// keeps parallel test files (and a running stack) from colliding on 587.
describeServiceLifecycle('relay', new URL('../src/index.ts', import.meta.url), {
  env: () => {
    const files = relayFiles()
    return {
      ATMOS_RELAY_SUBMISSION_PORT: '0',
      ATMOS_RELAY_SUBMISSION_TLS_CERT_FILE: files.certFile,
      ATMOS_RELAY_SUBMISSION_TLS_KEY_FILE: files.keyFile,
      ATMOS_RELAY_KEK_FILE: files.kekFile,
      ATMOS_RELAY_POOL_TOKEN_SECRET_FILE: files.tokenSecretFile,
    }
  },
  // Readiness without Redis: see src/context.ts.
  redis: 'degraded',
})
