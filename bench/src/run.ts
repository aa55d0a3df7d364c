// Runs every benchmark and prints each figure beside its target (and all of them as JSON
// on the last line). `pnpm bench` from the repository root; not part of the tests.
import { cpus } from 'node:os'
import { benchLabels } from './labels.ts'
import { benchRelay } from './relay.ts'
import { type Figure, printFigure } from './report.ts'
import { benchVerify } from './verify.ts'

const quick = process.argv.includes('--quick')
// `--only relay` (or labeler, verify) runs one benchmark.
const only = process.argv[process.argv.indexOf('--only') + 1]
console.log(
  `machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}${quick ? ', quick run' : ''}`,
)
const figures: Figure[] = []
for (const [title, run] of [
  ['labeler: queryLabels, subscribeLabels, idle subscribers', () => benchLabels(quick ? 100_000 : 1_000_000)],
  ['verify: checks against loopback DNS', () => benchVerify(1000, 16, quick ? 3 : 10)],
  [
    'relay: submission over STARTTLS + AUTH, delivery to a loopback MX (submission and delivery processes)',
    () => benchRelay(quick ? 2000 : 10_000, 50, { processes: 'split' }),
  ],
] as const) {
  if (process.argv.includes('--only') && !title.startsWith(`${only}:`)) continue
  console.log(`\n== ${title}`)
  for (const f of await run()) {
    printFigure(f)
    figures.push(f)
  }
}
console.log(`\n${JSON.stringify({ figures })}`)
process.exit(0)
