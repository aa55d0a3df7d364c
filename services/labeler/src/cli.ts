// Operator commands (`pnpm --filter @atmos/labeler labeler <command>`, or `node src/cli.ts`):
//
//   init                       create the label signing key (mode 0600) if it is missing and
//                              print its did:key; an existing key is never overwritten
//   verify <did-or-domain>     run every check now for each live attestation of the DID (or of
//          [--did D --selector S ...]   the domain) and print a report per domain with whether the
//                              DID holds it; exit 0 only if all pass (1: a check failed, 75: DNS
//                              could not answer). --did/--selector check a domain that has no
//                              attestation yet
//   declare [--publish --pds URL --identifier HANDLE]
//                              print the app.bsky.labeler.service record and the DID document
//                              entries; with --publish, write the record to the labeler's
//                              repository (password from ATMOS_LABELER_ACCOUNT_PASSWORD)
// Usage is declared here and the work imported only when a command runs (src/commands.ts).
import { command, runCli, UsageError } from '@atmos/config/cli'

/** The commands' work (src/commands.ts), loaded only once a command runs. */
const work = () => import('./commands.ts')

const COMMANDS = {
  init: command({
    usage: '',
    help: 'Creates the label signing key (mode 0600) if it is missing and prints its did:key;\nan existing key is never overwritten.',
    run: async () => (await work()).init(),
  }),
  verify: command({
    usage: '<did-or-domain> [--did DID --selector SEL ...]',
    help:
      'Runs every check now for each live attestation of the DID (or of the domain) and prints a report per\n' +
      'domain with whether the DID holds it. Exit 0 only if all pass, 1 when a check failed, 75 when DNS\n' +
      'could not answer. --did and --selector check a domain that has no attestation yet.',
    args: [{ name: '<did-or-domain>', help: 'a DID (each domain it attests) or a domain (each DID attesting it)' }],
    min: 1,
    options: {
      did: {
        type: 'string',
        value: 'DID',
        help: 'check the domain for this DID, without an attestation (needs --selector)',
      },
      selector: { type: 'string', multiple: true, value: 'SEL', help: 'a DKIM selector to check (with --did)' },
    },
    async run({ values, positionals }) {
      const { did, selector } = values
      if (did && !selector?.length) throw new UsageError('--did needs at least one --selector')
      if (!did && selector?.length) throw new UsageError('--selector needs --did')
      const unattested = did && selector?.length ? { did, selectors: selector } : undefined
      return (await work()).verify(positionals[0]!, unattested)
    },
  }),
  declare: command({
    usage: '[--publish --pds URL --identifier HANDLE]',
    help:
      'Prints the app.bsky.labeler.service record and the DID document entries the labeler needs;\n' +
      "with --publish, writes the record to the labeler's repository.",
    options: {
      publish: {
        type: 'boolean',
        help: "write the record to the labeler's repository (password from ATMOS_LABELER_ACCOUNT_PASSWORD)",
      },
      pds: { type: 'string', value: 'URL', help: "the PDS of the labeler's account (with --publish)" },
      identifier: { type: 'string', value: 'HANDLE', help: "the labeler account's handle or DID (with --publish)" },
    },
    async run({ values }) {
      const password = process.env.ATMOS_LABELER_ACCOUNT_PASSWORD
      if (values.publish && (!values.pds || !values.identifier || !password)) {
        throw new UsageError('--publish needs --pds, --identifier and the password in ATMOS_LABELER_ACCOUNT_PASSWORD')
      }
      const publish =
        values.publish && values.pds && values.identifier && password
          ? { pds: values.pds, identifier: values.identifier, password }
          : undefined
      return (await work()).declare(publish)
    },
  }),
}

process.exit(await runCli('labeler', COMMANDS, process.argv.slice(2)))
