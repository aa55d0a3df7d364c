// Operator commands: `node src/cli.ts init`
//   init   creates the label signing key (mode 0600) at labeler.signingKeyFile if it is
//          missing and prints its did:key; an existing key is never overwritten.
// (verify and declare come with the verification pipeline.)
import { existsSync } from 'node:fs'
import { ConfigError, loadConfig } from '@atmos/config'
import { createSigningKeyFile, loadSigningKeyFile } from '@atmos/labels'
import { labelerConfigSchema } from './config.ts'

const [command] = process.argv.slice(2)

async function init() {
  const config = loadConfig(labelerConfigSchema)
  const path = config.labeler.signingKeyFile
  if (existsSync(path)) {
    const keypair = await loadSigningKeyFile(path)
    console.log(`signing key already exists at ${path}\n${keypair.did()}`)
    return
  }
  const keypair = await createSigningKeyFile(path)
  console.log(`created signing key ${path} (mode 0600)\n${keypair.did()}`)
}

try {
  if (command === 'init') await init()
  else {
    console.error('usage: labeler init')
    process.exit(64)
  }
} catch (err) {
  console.error(`labeler ${command}: ${err instanceof ConfigError ? err.message : (err as Error).message}`)
  process.exit(1)
}
