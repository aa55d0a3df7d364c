// Operator commands (`pnpm --filter @atmos/admin admin <command>`, or `node src/cli.ts`).
//   admin oauth init     creates the key-encryption key file (admin.kekFile) and the OAuth
//                        client's signing keys (admin.oauth.keysFile), mode 0600, when missing
//   admin oauth rotate   adds a newer signing key; the newest signs after the next restart
import { command, loadConfig, runCli } from '@atmos/config'
import { createKeyringFile } from '@atmos/secrets'
import { adminConfigSchema } from './config.ts'
import { initClientKeys, rotateClientKeys } from './oauth/keys.ts'

const oauthInit = command({
  usage: '',
  help:
    "Creates the key-encryption key file (admin.kekFile) and the OAuth client's signing keys\n" +
    '(admin.oauth.keysFile), mode 0600, when missing; existing files are left as they are.',
  async run() {
    const { admin } = loadConfig(adminConfigSchema)
    console.log(
      createKeyringFile(admin.kekFile) ? `created ${admin.kekFile} (mode 0600)` : `${admin.kekFile} already exists`,
    )
    const created = await initClientKeys(admin.oauth.keysFile)
    console.log(created ? `created ${admin.oauth.keysFile} (mode 0600)` : `${admin.oauth.keysFile} already exists`)
    return 0
  },
})

const oauthRotate = command({
  usage: '',
  help:
    'Adds a newer signing key to admin.oauth.keysFile; the newest signs after the admin restarts.\n' +
    'Keep the older keys for admin.session.ttl after every replica restarted, then remove them.',
  async run() {
    const { admin } = loadConfig(adminConfigSchema)
    const kid = await rotateClientKeys(admin.oauth.keysFile)
    console.log(`added signing key ${kid} to ${admin.oauth.keysFile}; it signs after the admin restarts.`)
    // An OAuth session refreshes with the key it was made with: the old key must outlive the sign-ins made with it.
    console.log(
      'Keep the older keys in the file for admin.session.ttl after every replica restarted, then remove them.',
    )
    return 0
  },
})

process.exitCode = await runCli('admin', { oauth: { init: oauthInit, rotate: oauthRotate } }, process.argv.slice(2))
