// What `admin oauth init | rotate` do. src/cli.ts imports this module only when one of them
// runs, so that help and usage errors load the argument parser alone.
import { loadConfig } from '@atmos/config'
import { createKeyringFile } from '@atmos/secrets'
import { adminConfigSchema } from './config.ts'
import { initClientKeys, rotateClientKeys } from './oauth/keys.ts'

export async function oauthInit(): Promise<number> {
  const { admin } = loadConfig(adminConfigSchema)
  console.log(
    createKeyringFile(admin.kekFile) ? `created ${admin.kekFile} (mode 0600)` : `${admin.kekFile} already exists`,
  )
  const created = await initClientKeys(admin.oauth.keysFile)
  console.log(created ? `created ${admin.oauth.keysFile} (mode 0600)` : `${admin.oauth.keysFile} already exists`)
  return 0
}

export async function oauthRotate(): Promise<number> {
  const { admin } = loadConfig(adminConfigSchema)
  const kid = await rotateClientKeys(admin.oauth.keysFile)
  console.log(`added signing key ${kid} to ${admin.oauth.keysFile}; it signs after the admin restarts.`)
  // An OAuth session refreshes with the key it was made with: the old key must outlive the sign-ins made with it.
  console.log('Keep the older keys in the file for admin.session.ttl after every replica restarted, then remove them.')
  return 0
}
