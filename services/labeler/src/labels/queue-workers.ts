import { createRedis, createWorker, memberStatusChanged, revokeLabels, type Worker } from '@atmos/queues'
import type { Logger } from '@atmos/runtime'
import type { Redis } from 'ioredis'
import type { LabelManager } from './manager.ts'
import type { StoredLabel } from './writer.ts'

type QueueWorkerOptions = {
  redisUrl: string
  prefix: string
  manager: LabelManager
  logger: Logger
  onLabels?: (labels: StoredLabel[]) => void
}

/**
 * Label changes other services ask for: a suspension or reinstatement (fbl-ingest, an
 * operator) moves relay-member; a revocation withdraws every label on the DID.
 */
export class LabelQueueWorkers {
  private workers: Worker[] = []
  private connections: Redis[] = []
  private readonly opts: QueueWorkerOptions

  constructor(opts: QueueWorkerOptions) {
    this.opts = opts
  }

  start(): void {
    const { manager, prefix, logger } = this.opts
    const onLabels = this.opts.onLabels ?? (() => {})
    const connection = () => {
      const c = createRedis(this.opts.redisUrl)
      c.on('error', () => {})
      this.connections.push(c)
      return c
    }
    this.workers.push(
      createWorker(memberStatusChanged, connection(), prefix, async (p) => {
        const emitted = await manager.applyMemberStatus(p.did, `member ${p.status}: ${p.reason}`, p.changeId)
        onLabels(emitted)
        logger.info({ did: p.did, status: p.status, labels: emitted.length }, 'member status applied')
        return { emitted: emitted.length }
      }),
      createWorker(revokeLabels, connection(), prefix, async (p) => {
        const emitted = await manager.withdrawAll(p.did, p.reason)
        onLabels(emitted)
        return { emitted: emitted.length }
      }),
    )
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()))
    await Promise.all(this.connections.map((c) => c.quit().catch(() => c.disconnect())))
    this.workers = []
    this.connections = []
  }
}
