import { randomBytes, randomUUID } from 'node:crypto'
import { createDb, type Db, domains, members, messageRecipients, messages } from '@atmos/db'
import { memberStatusChanged, TypedQueue } from '@atmos/queues'
import { createTestDatabase, deletePrefix, type TestDatabase, testRedis, testRedisPrefix } from '@atmos/testkit'

export type Harness = {
  db: Db
  redis: ReturnType<typeof testRedis>
  prefix: string
  queue: TypedQueue<typeof memberStatusChanged>
  close: () => Promise<void>
}

export async function harness(): Promise<Harness & { database: TestDatabase }> {
  const database = await createTestDatabase()
  const db = createDb({ url: database.url, poolMax: 4 })
  const redis = testRedis()
  const prefix = testRedisPrefix('reputation')
  const queue = new TypedQueue(memberStatusChanged, redis, prefix)
  return {
    database,
    db,
    redis,
    prefix,
    queue,
    close: async () => {
      await queue.close()
      await deletePrefix(redis, prefix)
      redis.disconnect()
      await db.$client.end({ timeout: 5 })
      await database.drop()
    },
  }
}

export type TestMember = { id: number; did: string; domain: string; domainId: number }

/** A member holding one active domain, as the relay enrols one. */
export async function addMember(db: Db, status: 'active' | 'pending' | 'suspended' = 'active'): Promise<TestMember> {
  const tag = randomBytes(6).toString('hex')
  const [m] = await db
    .insert(members)
    .values({ did: `did:plc:rep${tag}`, status, activatedAt: new Date() })
    .returning({ id: members.id, did: members.did })
  const d = await addDomain(db, m!.id, `m${tag}.example`)
  return { ...m!, domain: d.domain, domainId: d.id }
}

export async function addDomain(db: Db, memberId: number, domain: string): Promise<{ id: number; domain: string }> {
  const [d] = await db
    .insert(domains)
    .values({ memberId, domain, status: 'active', activatedAt: new Date() })
    .returning({ id: domains.id, domain: domains.domain })
  return d!
}

/** `count` spooled messages of the member (sent as `domainId` when given), one recipient each, in `state`, finished `agoMs` ago. */
export async function addOutcomes(
  db: Db,
  memberId: number,
  count: number,
  state: 'delivered' | 'bounced' | 'queued',
  agoMs = 60_000,
  domainId: number | null = null,
): Promise<{ messageId: string; address: string }[]> {
  const out: { messageId: string; address: string }[] = []
  const at = new Date(Date.now() - agoMs)
  const msgRows = []
  const rcptRows = []
  for (let i = 0; i < count; i++) {
    const id = randomUUID()
    const address = `r${i}-${id.slice(0, 8)}@example.net`
    msgRows.push({
      id,
      memberId,
      domainId,
      envelopeFrom: 'noreply@member.example',
      returnPath: `b+x@bounces.example`,
      size: 10,
      body: Buffer.from('x'),
      expiresAt: new Date(Date.now() + 86_400_000),
      receivedAt: at,
    })
    rcptRows.push({ messageId: id, address, domain: 'example.net', state, updatedAt: at })
    out.push({ messageId: id, address })
  }
  for (let i = 0; i < msgRows.length; i += 500) {
    await db.insert(messages).values(msgRows.slice(i, i + 500))
    await db.insert(messageRecipients).values(rcptRows.slice(i, i + 500))
  }
  return out
}
