// Operator commands (`node services/fbl-ingest/src/cli.ts <command>`):
//
//   classify FILE...   read each file as one inbound message and print, per recipient, one
//                      JSON line: what the message is (arf, dsn, plain_bounce, auto_reply,
//                      other, unparseable), address, action, status, reply code, reason
//                      class, hard or soft, the feedback type of a complaint, and the
//                      attribution hints. Nothing is stored. Exit 0 when every file was
//                      read, 66 when one could not be, 64 on bad usage.
//
//   aggregate | suppressions | reinstate   feedback and reputation commands (src/ops-cli.ts)
//
// `fbl-ingest --help` lists every command, `fbl-ingest help <command>` explains one.
//
// The pool identity (VERP domain and prefix, Feedback-ID sender id, token secret) comes
// from the usual config: `fblIngest.pool.*` in $ATMOS_CONFIG or ATMOS_FBL_INGEST_POOL_*.
// Without the secret file, tokens cannot be verified: the command says so on stderr and
// prints the other hints.
// Usage is declared here; each command's work is imported only when it runs (src/classify-command.ts,
// src/ops-commands.ts), so that help and usage errors load the argument parser alone.
import { command, runCli } from '@atmos/config/cli'
import { OPS_COMMANDS } from './ops-cli.ts'

const classifyCommand = command({
  usage: 'FILE...',
  help:
    'Reads each file as one inbound message and prints, per recipient, one JSON line: what the message\n' +
    'is (arf, dsn, plain_bounce, auto_reply, other, unparseable), address, action, status, reply code,\n' +
    'reason class, hard or soft, the feedback type of a complaint, and the attribution hints. Nothing is\n' +
    'stored. Exit 66 when a file could not be read.',
  args: [{ name: 'FILE...', help: 'a message as received (RFC 5322), one per file' }],
  min: 1,
  max: Number.POSITIVE_INFINITY,
  run: async ({ positionals }) => (await import('./classify-command.ts')).classify(positionals),
})

process.exit(await runCli('fbl-ingest', { classify: classifyCommand, ...OPS_COMMANDS }, process.argv.slice(2)))
