// Operator commands (`pnpm --filter @atmos/scheduler scheduler <command>`, or `node src/cli.ts`):
//
//   run-once [--timeout 10m]   re-verify every live attestation now through the labeler's
//                              verify queue (a labeler must be running), wait, and print a
//                              summary table; exit 0 when every verification finished, 75 when
//                              some did not within the timeout
// Usage is declared here and the work imported only when the command runs (src/run-once-command.ts).
import { command, parseDuration, runCli, UsageError } from '@atmos/config/cli'

const runOnce = command({
  usage: '[--timeout 10m]',
  help:
    "Re-verifies every live attestation now through the labeler's verify queue (a labeler must be\n" +
    'running), waits, and prints a summary table. Exit 0 when every verification finished, 75 when\n' +
    'some did not within the timeout.',
  options: {
    timeout: {
      type: 'string',
      value: 'DURATION',
      help: 'how long to wait for the verifications, e.g. 30s or 10m; default 10m',
    },
  },
  async run({ values }) {
    const timeout = values.timeout ?? '10m'
    const timeoutMs = parseDuration(timeout)
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new UsageError(`--timeout: expected a duration such as "30s" or "10m", got ${JSON.stringify(timeout)}`)
    }
    const { runOnceCommand } = await import('./run-once-command.ts')
    return runOnceCommand(timeoutMs)
  },
})

process.exitCode = await runCli('scheduler', { 'run-once': runOnce }, process.argv.slice(2))
