import * as dagCbor from '@ipld/dag-cbor'
import { decodeFirst } from 'cborg'

// Event-stream frames as the atproto spec defines them for subscriptions such as
// com.atproto.label.subscribeLabels: a DAG-CBOR header followed by a DAG-CBOR body in
// one binary WebSocket message.

export type MessageHeader = { op: 1; t: string }
export type ErrorHeader = { op: -1 }
export type Frame =
  | { header: MessageHeader; body: Record<string, unknown> }
  | { header: ErrorHeader; body: { error: string; message?: string } }

const headers = new Map<string, Uint8Array>()

export function encodeMessageFrame(type: string, body: Record<string, unknown>): Uint8Array {
  // A stream sends one type of message over and over: its header is encoded once.
  let header = headers.get(type)
  if (!header) {
    header = dagCbor.encode({ op: 1, t: type })
    if (headers.size < 64) headers.set(type, header)
  }
  return concat(header, dagCbor.encode(body))
}

export function encodeErrorFrame(error: string, message?: string): Uint8Array {
  return concat(dagCbor.encode({ op: -1 }), dagCbor.encode(message === undefined ? { error } : { error, message }))
}

/** Splits a frame into its two CBOR objects; throws on anything else. */
export function decodeFrame(bytes: Uint8Array): Frame {
  const [header, rest] = decodeFirst(bytes, dagCbor.decodeOptions)
  const [body, trailing] = decodeFirst(rest, dagCbor.decodeOptions)
  if (trailing.length) throw new Error('frame has bytes after its body')
  const h = header as { op?: unknown; t?: unknown }
  if (h.op === 1 && typeof h.t === 'string') return { header: { op: 1, t: h.t }, body: body as Record<string, unknown> }
  if (h.op === -1) return { header: { op: -1 }, body: body as { error: string; message?: string } }
  throw new Error(`unknown frame header ${JSON.stringify(header)}`)
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}
