import { describeServiceLifecycle } from '@atmos/testkit'

describeServiceLifecycle('scheduler', new URL('../src/index.ts', import.meta.url), {
  // Readiness without Redis: see src/context.ts.
  redis: 'required',
})
