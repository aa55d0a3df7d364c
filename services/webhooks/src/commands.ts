// What `webhooks key init` does; src/cli.ts imports this module only when it runs.
import { loadConfig } from '@atmos/config'
import { createKeyringFile } from '@atmos/secrets'
import { webhooksConfigSchema } from './config.ts'

export async function keyInit(): Promise<number> {
  const { webhooks } = loadConfig(webhooksConfigSchema)
  console.log(
    createKeyringFile(webhooks.kekFile)
      ? `created ${webhooks.kekFile} (mode 0600)`
      : `${webhooks.kekFile} already exists`,
  )
  return 0
}
