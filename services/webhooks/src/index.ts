// Entry point of the webhooks service: config from the environment and $ATMOS_CONFIG, then run until SIGTERM.
import { runMain } from '@atmos/runtime'
import { webhooksConfigSchema } from './config.ts'
import { WebhooksService } from './service.ts'

await runMain({ name: 'webhooks', schema: webhooksConfigSchema, create: (config) => WebhooksService.create(config) })
