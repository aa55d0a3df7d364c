import { describeServiceLifecycle } from '@atmos/testkit'

describeServiceLifecycle('admin', new URL('../src/index.ts', import.meta.url))
