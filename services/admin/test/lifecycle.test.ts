import { describeServiceLifecycle } from '@atmos/testkit'

// The web endpoint on a free port: several test processes may run at once.
describeServiceLifecycle('admin', new URL('../src/index.ts', import.meta.url), {
  env: () => ({ ATMOS_ADMIN_WEB_PORT: '0' }),
  // Readiness without Redis: see src/context.ts.
  redis: 'degraded',
})
