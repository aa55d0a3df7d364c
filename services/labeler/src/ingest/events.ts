import { z } from 'zod'

/**
 * What any source (Jetstream, a repo firehose) reports, once normalised. `time` is when the
 * source says the event happened (a firehose's ISO time; Jetstream's cursor is its time_us).
 */
export type IngestEvent = (
  | { kind: 'record'; did: string; collection: string; rkey: string; cid?: string; record: unknown; cursor: number }
  | { kind: 'delete'; did: string; collection: string; rkey: string; cursor: number }
  | { kind: 'identity'; did: string; handle?: string; cursor: number }
  | { kind: 'account'; did: string; active: boolean; status?: string; cursor: number }
) & { time?: string }

const did = z
  .string()
  .regex(/^did:[a-z]+:[a-zA-Z0-9._:%-]+$/)
  .max(2048)
const timeUs = z.number().int().positive()

/** A Jetstream frame, checked before anything trusts it. */
const jetstreamFrame = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('commit'),
    did,
    time_us: timeUs,
    commit: z.object({
      operation: z.enum(['create', 'update', 'delete']),
      collection: z.string().min(1).max(317),
      rkey: z.string().min(1).max(512),
      cid: z.string().max(200).optional(),
      record: z.unknown().optional(),
    }),
  }),
  z.object({
    kind: z.literal('identity'),
    did,
    time_us: timeUs,
    identity: z.object({ handle: z.string().max(253).optional() }).optional(),
  }),
  z.object({
    kind: z.literal('account'),
    did,
    time_us: timeUs,
    account: z.object({ active: z.boolean(), status: z.string().max(64).optional() }),
  }),
])

export type ParsedFrame = { ok: true; event: IngestEvent } | { ok: false; reason: string; cursor?: number }

/** Parses one Jetstream text frame; a malformed one is reported, never thrown. */
export function parseJetstreamFrame(text: string): ParsedFrame {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return { ok: false, reason: 'frame is not JSON' }
  }
  const result = jetstreamFrame.safeParse(json)
  if (!result.success) {
    const cursor =
      typeof (json as { time_us?: unknown })?.time_us === 'number' ? (json as { time_us: number }).time_us : undefined
    const first = result.error.issues[0]
    return { ok: false, reason: `${first?.path.join('.') || 'frame'}: ${first?.message}`, cursor }
  }
  const f = result.data
  switch (f.kind) {
    case 'commit':
      if (f.commit.operation === 'delete') {
        return {
          ok: true,
          event: {
            kind: 'delete',
            did: f.did,
            collection: f.commit.collection,
            rkey: f.commit.rkey,
            cursor: f.time_us,
          },
        }
      }
      return {
        ok: true,
        event: {
          kind: 'record',
          did: f.did,
          collection: f.commit.collection,
          rkey: f.commit.rkey,
          cid: f.commit.cid,
          record: f.commit.record,
          cursor: f.time_us,
        },
      }
    case 'identity':
      return { ok: true, event: { kind: 'identity', did: f.did, handle: f.identity?.handle, cursor: f.time_us } }
    case 'account':
      return {
        ok: true,
        event: { kind: 'account', did: f.did, active: f.account.active, status: f.account.status, cursor: f.time_us },
      }
  }
}
