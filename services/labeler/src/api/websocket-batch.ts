import { labelFrameLength, writeLabelFrame } from '@atmos/labels'
import type { StreamLabel } from '../labels/stream.ts'

/** WebSocket frame head: FIN set, opcode 2 (binary message). */
const FIN_BINARY = 0x82

/** Bytes of an unmasked (server-to-client) WebSocket frame head for a payload of `len` bytes. */
function headLength(len: number): number {
  return len < 126 ? 2 : len < 0x10000 ? 4 : 10
}

/**
 * A batch of labels as the bytes of consecutive WebSocket binary messages, one `#labels`
 * event-stream frame each, in one Buffer: one socket write per batch instead of a
 * `ws.send` per label (each of which builds its own frame head and goes through the
 * sender and the socket's write queue). Frames are unmasked and uncompressed, as a server
 * sends them without permessage-deflate (RFC 6455 §5.2); the test holds the heads equal
 * to those of ws's own Sender.
 */
export function labelMessages(batch: readonly StreamLabel[]): Buffer {
  let total = 0
  for (const label of batch) {
    const len = labelFrameLength(label.seq, label.cbor.length)
    total += headLength(len) + len
  }
  const buf = Buffer.allocUnsafe(total)
  let pos = 0
  for (const label of batch) {
    const len = labelFrameLength(label.seq, label.cbor.length)
    buf[pos++] = FIN_BINARY
    if (len < 126) buf[pos++] = len
    else if (len < 0x10000) {
      buf[pos++] = 126
      buf.writeUInt16BE(len, pos)
      pos += 2
    } else {
      buf[pos++] = 127
      buf.writeBigUInt64BE(BigInt(len), pos)
      pos += 8
    }
    pos = writeLabelFrame(buf, pos, label.seq, label.cbor)
  }
  return buf
}
