import { describeServiceLifecycle } from '@atmos/testkit'

describeServiceLifecycle('relay', new URL('../src/index.ts', import.meta.url))
