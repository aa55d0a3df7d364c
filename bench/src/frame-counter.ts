import { randomBytes } from 'node:crypto'
import { connect } from 'node:net'
import { decodeFrame } from '@atmos/labels'

/**
 * The replay client both labelers are measured with: a WebSocket reader that counts
 * binary messages straight off the TCP stream (frame headers parsed, payloads skipped)
 * and decodes one in a hundred as event-stream frames, as a relay forwarding the stream
 * would. A general WebSocket library spends ~25 µs a message here, which capped the
 * figure at the client's pace rather than the server's.
 */
export function countFrames(
  base: string,
  path: string,
  total: number,
  timeoutMs: number,
): Promise<{ count: number; seconds: number }> {
  const url = new URL(path, base)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname)
    let t0 = 0
    let count = 0
    let upgraded = false
    let pending: Buffer = Buffer.alloc(0)
    /** Bytes of the current frame's payload still to skip (or collect, when decoding it). */
    let skip = 0
    let collect: Buffer[] | undefined
    const done = (err?: Error) => {
      clearTimeout(timer)
      socket.destroy()
      if (err) reject(err)
      else resolve({ count, seconds: (performance.now() - t0) / 1000 })
    }
    const timer = setTimeout(() => done(), timeoutMs)
    socket.on('connect', () => {
      t0 = performance.now()
      socket.write(
        `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      )
    })
    socket.on('error', (err) => done(err))
    socket.on('data', (chunk: Buffer) => {
      let buf = pending.length ? Buffer.concat([pending, chunk]) : chunk
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n')
        if (end === -1) {
          pending = buf
          return
        }
        if (!buf.subarray(0, 12).toString().includes('101')) return done(new Error('upgrade refused'))
        upgraded = true
        buf = buf.subarray(end + 4)
      }
      let pos = 0
      while (pos < buf.length) {
        if (skip > 0) {
          const n = Math.min(skip, buf.length - pos)
          collect?.push(buf.subarray(pos, pos + n))
          skip -= n
          pos += n
          if (skip === 0 && collect) {
            const frame = decodeFrame(new Uint8Array(Buffer.concat(collect)))
            collect = undefined
            if (frame.header.op !== 1) return done(new Error(`error frame ${JSON.stringify(frame.body)}`))
          }
          if (skip === 0 && count === total) return done()
          continue
        }
        // Header: 2 bytes, then 2 or 8 bytes of length (server frames are not masked).
        if (buf.length - pos < 2) break
        const opcode = buf[pos]! & 0x0f
        let len = buf[pos + 1]! & 0x7f
        let head = 2
        if (len === 126) {
          if (buf.length - pos < 4) break
          len = buf.readUInt16BE(pos + 2)
          head = 4
        } else if (len === 127) {
          if (buf.length - pos < 10) break
          len = Number(buf.readBigUInt64BE(pos + 2))
          head = 10
        }
        if (opcode === 8) return done(count === total ? undefined : new Error(`closed after ${count} frames`))
        pos += head
        skip = len
        if (opcode === 2 && count++ % 100 === 0) collect = []
        if (len === 0 && count === total) return done()
      }
      pending = pos < buf.length ? Buffer.from(buf.subarray(pos)) : Buffer.alloc(0)
    })
  })
}
