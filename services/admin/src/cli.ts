// Operator commands (`pnpm --filter @atmos/admin admin <command>`, or `node src/cli.ts`).
//   admin oauth init     creates the key-encryption key file (admin.kekFile) and the OAuth
//                        client's signing keys (admin.oauth.keysFile), mode 0600, when missing
//   admin oauth rotate   adds a newer signing key; the newest signs after the next restart
import { loadConfig } from '@atmos/config'
import { createKeyringFile } from '@atmos/secrets'
import { adminConfigSchema } from './config.ts'
import { initClientKeys, rotateClientKeys } from './oauth/keys.ts'

const EX_USAGE = 64
const USAGE = 'usage: admin oauth init | admin oauth rotate'

async function main(args: string[]): Promise<number> {
  if (args[0] === '--help' || args[0] === '-h') {
    console.log(USAGE)
    return 0
  }
  if (args[0] !== 'oauth' || !['init', 'rotate'].includes(args[1] ?? '') || args.length !== 2) {
    console.error(USAGE)
    return EX_USAGE
  }
  const { admin } = loadConfig(adminConfigSchema)
  if (args[1] === 'init') {
    console.log(
      createKeyringFile(admin.kekFile) ? `created ${admin.kekFile} (mode 0600)` : `${admin.kekFile} already exists`,
    )
    const created = await initClientKeys(admin.oauth.keysFile)
    console.log(created ? `created ${admin.oauth.keysFile} (mode 0600)` : `${admin.oauth.keysFile} already exists`)
    return 0
  }
  const kid = await rotateClientKeys(admin.oauth.keysFile)
  console.log(`added signing key ${kid} to ${admin.oauth.keysFile}; it signs after the admin restarts.`)
  // An OAuth session refreshes with the key it was made with: the old key must outlive the sign-ins made with it.
  console.log('Keep the older keys in the file for admin.session.ttl after every replica restarted, then remove them.')
  return 0
}

process.exitCode = await main(process.argv.slice(2))
