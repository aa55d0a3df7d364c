// Runs every benchmark and prints one table of figures, each beside its same-run reference
// and target, then the same as JSON on the last line. `pnpm bench` from the repository
// root (or ./scripts/bench.sh); not part of the tests. Progress goes to stderr.
import { readFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { benchLabels } from './labels.ts'
import { benchRelay } from './relay.ts'
import { type Figure, figuresJson, printTable, progress } from './report.ts'
import { benchVerify } from './verify.ts'

const quick = process.argv.includes('--quick')
// `--only relay` (or labeler, verify) runs one benchmark.
const only = process.argv[process.argv.indexOf('--only') + 1]

/** The CPU model as the kernel names it (the figures mean something only beside it). */
function cpuModel(): string {
  try {
    return /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown'
  } catch {
    return cpus()[0]?.model ?? 'unknown'
  }
}

const machine = {
  cpu: cpuModel(),
  cores: cpus().length,
  node: process.version,
  run: quick ? 'quick' : 'full',
  loadBefore: Number(loadavg()[0]?.toFixed(2)),
}
const figures: Figure[] = []
for (const [title, run] of [
  ['labeler: queryLabels, subscribeLabels beside @skyware/labeler', () => benchLabels(quick ? 100_000 : 1_000_000)],
  ['verify: checks against loopback DNS beside plain node:dns lookups', () => benchVerify(1000, 16, quick ? 3 : 10)],
  [
    'relay: submission over STARTTLS + AUTH, delivery to a loopback MX (submission and delivery processes)',
    () => benchRelay(quick ? 2000 : 10_000, 50, { processes: 'split' }),
  ],
] as const) {
  if (process.argv.includes('--only') && !title.startsWith(`${only}:`)) continue
  progress(`== ${title}`)
  figures.push(...(await run()))
}
const after = { ...machine, loadAfter: Number(loadavg()[0]?.toFixed(2)) }
console.log(
  `machine: ${after.cores} × ${after.cpu}, node ${after.node}, ${after.run} run, load ${after.loadBefore} → ${after.loadAfter}\n`,
)
printTable(figures)
console.log(`\n${figuresJson(after, figures)}`)
process.exit(0)
