import { describeServiceLifecycle } from '@atmos/testkit'

describeServiceLifecycle('fbl-ingest', new URL('../src/index.ts', import.meta.url))
