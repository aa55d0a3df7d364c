import { createServer } from 'node:net'
import type { Listener } from './plan.ts'

/**
 * Why each listener with a fixed port could not be opened right now, one sentence each
 * naming the port, what wanted it and the variable that moves it; empty when all are free.
 * Checked before anything starts, so that a port still held (by a stack whose terminal
 * closed, say) stops the start at once instead of one service exiting with EADDRINUSE.
 */
export async function portProblems(listeners: Listener[]): Promise<string[]> {
  const problems: string[] = []
  for (const l of listeners) {
    if (l.port === 0) continue
    const code = await tryListen(l.host, l.port)
    if (!code) continue
    const where = `${l.host}:${l.port} (${l.service} ${l.what}, set by ${l.setBy})`
    if (code === 'EADDRINUSE')
      problems.push(
        `port ${l.port} is taken: ${where}. Stop what holds it (\`ss -ltnp 'sport = :${l.port}'\` names it), or move it`,
      )
    else if (code === 'EACCES') problems.push(`port ${l.port} needs root: ${where}. Use a port above 1023`)
    else if (code === 'EADDRNOTAVAIL') problems.push(`${l.host} is not an address of this machine: ${where}`)
    else problems.push(`cannot listen on ${where}: ${code}`)
  }
  return problems
}

function tryListen(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)))
  })
}
