import { describeServiceLifecycle } from '@atmos/testkit'

describeServiceLifecycle('scheduler', new URL('../src/index.ts', import.meta.url))
