// Runs the loopback DNS server in a process of its own, so that the verifier under test
// does not share an event loop with it. Prints its port, then serves until killed.
import { goodMailZone, TestDnsServer } from '@atmos/testkit'

const count = Number(process.argv[2] ?? 1000)
const zone = Object.assign(
  {},
  ...Array.from({ length: count }, (_, i) => goodMailZone(`d${i}.bench.example`, `did:plc:bench${i}`)),
)
const server = new TestDnsServer(zone)
const port = await server.start()
console.log(JSON.stringify({ port }))
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)))
