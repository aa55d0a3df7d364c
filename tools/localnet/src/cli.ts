#!/usr/bin/env node
// The local network's command line: publish and remove DNS records, list what the sink
// received, script its next reply, send a complaint or a late bounce. It talks to the
// running network's JSON API (its address is in <state dir>/web-url, or --url).
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const USAGE = `usage: localnet [--url <network pages URL>] <command>

  info                              what the network runs (PDS, PLC, DNS, sink, demo account)
  dns list                          published records, then the network's own
  dns publish <line>...             publish zone-file lines ('-' reads them from stdin), e.g.
                                    localnet dns publish 'demo-mail.example. IN TXT "v=spf1 include:_spf.atmos.localhost -all"'
  dns remove <name> [<type>]        remove a name's published records (of one type)
  dns remove --line <line>          remove one exact record
  sink list                         received mail, newest first, with verdicts
  sink show <id|latest>             one message: envelope, verdicts, raw
  sink next hard|soft|accept        answer the next recipient 550 5.1.1, 451 4.2.0, or accept it
  sink complain <id|latest>         send an ARF complaint about it to the pool's feedback mailbox
  sink bounce <id|latest>           send a DSN (late bounce) to its return path

The URL is read from $ATMOS_LOCALNET_STATE_DIR/web-url (default .state/localnet) unless given.
Exit codes: 0 done, 1 refused or failed, 64 usage.`

class Usage extends Error {}

function baseUrl(args: string[]): string {
  const i = args.indexOf('--url')
  if (i >= 0) {
    const url = args[i + 1]
    args.splice(i, 2)
    if (!url) throw new Usage('--url needs a value')
    return url
  }
  if (process.env.ATMOS_LOCALNET_URL) return process.env.ATMOS_LOCALNET_URL
  const root = fileURLToPath(new URL('../../../', import.meta.url))
  const stateDir = resolve(root, process.env.ATMOS_LOCALNET_STATE_DIR || '.state/localnet')
  const file = join(stateDir, 'web-url')
  if (!existsSync(file))
    throw new Failure(`the local network is not running (no ${file}): start it with ./scripts/start.sh`)
  return readFileSync(file, 'utf8').trim()
}

class Failure extends Error {}

async function call(url: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  let res: Response
  try {
    res = await fetch(new URL(path, url), {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(60_000),
    })
  } catch (err) {
    throw new Failure(`cannot reach the local network at ${url}: ${(err as Error).cause ?? (err as Error).message}`)
  }
  const json = (await res.json().catch(() => ({}))) as Record<string, unknown>
  if (!res.ok) throw new Failure(String(json.error ?? `HTTP ${res.status}`))
  return json
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

type Entry = {
  id: string
  receivedAt: string
  mailFrom: string
  rcptTo: string[]
  subject: string
  verdicts: {
    dkim: { domain: string; selector: string; result: string }[]
    spf: { result: string }
    dmarc: { result: string }
  }
}

function verdictLine(e: Entry): string {
  const dkim = e.verdicts.dkim.map((d) => `dkim ${d.domain}/${d.selector}=${d.result}`).join(' ') || 'dkim none'
  return `${dkim} spf=${e.verdicts.spf.result} dmarc=${e.verdicts.dmarc.result}`
}

async function messageId(url: string, id: string | undefined): Promise<string> {
  if (!id) throw new Usage('a message id (or latest) is needed')
  if (id !== 'latest') return id
  const { messages } = (await call(url, 'GET', '/api/sink')) as { messages: Entry[] }
  if (!messages[0]) throw new Failure('the sink has received nothing yet')
  return messages[0].id
}

async function main(args: string[]): Promise<void> {
  if (args.length === 0 || args.includes('--help') || args.includes('-h') || args[0] === 'help') {
    process.stdout.write(`${USAGE}\n`)
    if (args.length === 0) process.exitCode = 64
    return
  }
  const url = baseUrl(args)
  const [group, command, ...rest] = args
  const out = (s: string) => process.stdout.write(`${s}\n`)
  if (group === 'info') {
    out(JSON.stringify(await call(url, 'GET', '/api/info'), null, 2))
    return
  }
  if (group === 'dns') {
    if (command === 'list') {
      const { records, builtIn } = (await call(url, 'GET', '/api/dns')) as { records: string[]; builtIn: string[] }
      out(records.length ? records.join('\n') : '(no published records)')
      out(`; the network's own:\n${builtIn.join('\n')}`)
      return
    }
    if (command === 'publish') {
      const lines = rest.length === 1 && rest[0] === '-' ? (await readStdin()).split(/\r?\n/) : rest
      if (lines.length === 0) throw new Usage('dns publish needs at least one line')
      const { added } = await call(url, 'POST', '/api/dns', { lines })
      out(`${added} record(s) published`)
      return
    }
    if (command === 'remove') {
      const body =
        rest[0] === '--line'
          ? { line: rest[1] }
          : rest[0]
            ? { name: rest[0], ...(rest[1] ? { type: rest[1] } : {}) }
            : undefined
      if (!body || (rest[0] === '--line' && !rest[1])) throw new Usage('dns remove <name> [<type>] or --line <line>')
      const { removed } = await call(url, 'DELETE', '/api/dns', body)
      out(`${removed} record(s) removed`)
      return
    }
  }
  if (group === 'sink') {
    if (command === 'list') {
      const { messages, nextReply } = (await call(url, 'GET', '/api/sink')) as {
        messages: Entry[]
        nextReply: string | null
      }
      if (nextReply) out(`(the next recipient gets a ${nextReply} bounce)`)
      if (messages.length === 0) out('(nothing received yet)')
      for (const m of messages)
        out(`${m.id}  ${m.receivedAt}  to ${m.rcptTo.join(',')}  "${m.subject}"  ${verdictLine(m)}`)
      return
    }
    if (command === 'show') {
      const m = await call(url, 'GET', `/api/sink/${encodeURIComponent(await messageId(url, rest[0]))}`)
      out(JSON.stringify(m, null, 2))
      return
    }
    if (command === 'next') {
      if (!['hard', 'soft', 'accept'].includes(rest[0] ?? '')) throw new Usage('sink next hard|soft|accept')
      const { nextReply } = await call(url, 'POST', '/api/sink/next', { reply: rest[0] })
      out(`next recipient: ${nextReply ?? 'accepted'}`)
      return
    }
    if (command === 'complain' || command === 'bounce') {
      const id = await messageId(url, rest[0])
      const { reply } = await call(url, 'POST', `/api/sink/${encodeURIComponent(id)}/${command}`, {})
      out(`${command === 'complain' ? 'complaint' : 'bounce'} about ${id} sent: ${reply}`)
      return
    }
  }
  throw new Usage(`unknown command: ${args.join(' ')}`)
}

try {
  await main(process.argv.slice(2))
} catch (err) {
  if (err instanceof Usage) {
    process.stderr.write(`localnet: ${err.message}\n${USAGE}\n`)
    process.exitCode = 64
  } else if (err instanceof Failure) {
    process.stderr.write(`localnet: ${err.message}\n`)
    process.exitCode = 1
  } else throw err
}
