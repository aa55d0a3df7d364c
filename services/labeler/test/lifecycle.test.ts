import { describeServiceLifecycle } from '@atmos/testkit'

describeServiceLifecycle('labeler', new URL('../src/index.ts', import.meta.url))
