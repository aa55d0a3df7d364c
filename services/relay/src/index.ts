// Entry point of the relay: config from the environment and $ATMOS_CONFIG, then run until SIGTERM.
import { runMain } from '@atmos/runtime'
import { relayConfigSchema } from './config.ts'
import { RelayService } from './service.ts'

await runMain({ name: 'relay', schema: relayConfigSchema, create: RelayService.create })
