// Operator commands (`pnpm --filter @atmos/webhooks webhooks <command>`, or `node src/cli.ts`):
//
//   key init   creates the key-encryption key file that seals endpoint secrets
//              (webhooks.kekFile), mode 0600, when missing; give the admin the same file
//              (admin.webhooks.kekFile)
// Usage is declared here and the work imported only when the command runs (src/commands.ts).
import { command, runCli } from '@atmos/config/cli'

const keyInit = command({
  usage: '',
  help:
    'Creates the key-encryption key file that seals endpoint secrets (webhooks.kekFile), mode 0600,\n' +
    'when missing; an existing file is left as it is. The admin seals with the same file\n' +
    '(admin.webhooks.kekFile).',
  run: async () => (await import('./commands.ts')).keyInit(),
})

process.exitCode = await runCli('webhooks', { key: { init: keyInit } }, process.argv.slice(2))
