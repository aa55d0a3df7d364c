// The reference labeler: @skyware/labeler serving the SQLite file the bench filled with the
// same labels as ours, in a process of its own as our labeler runs. Prints its URL; on the
// IPC message 'churn' it adds a label every 100 ms through its own API (createLabel: signs,
// stores, emits), on 'stop-churn' it stops and answers with how many it added.
import { LabelerServer } from '@skyware/labeler'
import { churnUri } from './label-data.ts'

const [dbPath, did, signingKey] = process.argv.slice(2) as [string, string, string]
const server = new LabelerServer({ did, signingKey, dbPath })
// Its schema is created before it answers (dbInitLock is private): the first request waits for it.
await (server as unknown as { dbInitLock: Promise<void> }).dbInitLock
const address = await server.app.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(`${JSON.stringify({ url: address })}\n`)

let churn: NodeJS.Timeout | undefined
let added = 0
let busy = false
process.on('message', (msg: string) => {
  if (msg === 'churn' && !churn) {
    churn = setInterval(() => {
      if (busy) return
      busy = true
      const n = added
      server
        .createLabel({ uri: churnUri(n), val: 'val0', neg: n % 2 === 1 })
        .then(() => added++)
        .finally(() => {
          busy = false
        })
    }, 100)
  } else if (msg === 'stop-churn') {
    clearInterval(churn)
    churn = undefined
    process.send?.({ added })
  }
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
