// Operator commands (`pnpm --filter @atmos/admin admin <command>`, or `node src/cli.ts`).
//   admin oauth init     creates the key-encryption key file (admin.kekFile) and the OAuth
//                        client's signing keys (admin.oauth.keysFile), mode 0600, when missing
//   admin oauth rotate   adds a newer signing key; the newest signs after the next restart
// Usage is declared here and the work imported only when a command runs (src/commands.ts).
import { command, runCli } from '@atmos/config/cli'

const work = () => import('./commands.ts')

const oauthInit = command({
  usage: '',
  help:
    "Creates the key-encryption key file (admin.kekFile) and the OAuth client's signing keys\n" +
    '(admin.oauth.keysFile), mode 0600, when missing; existing files are left as they are.',
  run: async () => (await work()).oauthInit(),
})

const oauthRotate = command({
  usage: '',
  help:
    'Adds a newer signing key to admin.oauth.keysFile; the newest signs after the admin restarts.\n' +
    'Keep the older keys for admin.session.ttl after every replica restarted, then remove them.',
  run: async () => (await work()).oauthRotate(),
})

process.exitCode = await runCli('admin', { oauth: { init: oauthInit, rotate: oauthRotate } }, process.argv.slice(2))
