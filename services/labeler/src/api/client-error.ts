import { maxHeaderSize, type Server, STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'

/** Node's own status for what its parser refuses, with words a person can act on. */
function refusal(code: string | undefined): { status: number; message: string } {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return {
        status: 431,
        message: `The request line and headers exceed ${maxHeaderSize} bytes: ask for fewer uriPatterns at a time.`,
      }
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { status: 413, message: 'The chunk extensions are too large.' }
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, message: 'The request took too long to arrive.' }
    default:
      return { status: 400, message: 'The request is not valid HTTP.' }
  }
}

/**
 * A request the HTTP parser refuses before any route sees it (a query longer than the
 * header limit, a malformed request line) is answered as every other refusal is, with an
 * XRPC error body, not Node's bare status line: clients show the message.
 */
export function answerClientErrors(http: Server): void {
  http.on('clientError', (err: NodeJS.ErrnoException, duplex: Duplex) => {
    const socket = duplex as Socket & { _httpMessage?: unknown }
    // A response already under way on this connection cannot be followed by another.
    if (err.code === 'ECONNRESET' || !socket.writable || socket._httpMessage) {
      socket.destroy()
      return
    }
    const { status, message } = refusal(err.code)
    const body = JSON.stringify({ error: 'InvalidRequest', message })
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
        'Content-Type: application/json; charset=utf-8\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        `Connection: close\r\n\r\n${body}`,
    )
    // The rest of the request is read and dropped, so that closing with it unread does not
    // reset the connection before the client has read the answer; a client that never
    // closes its side is cut off.
    socket.resume()
    socket.setTimeout(5_000, () => socket.destroy())
  })
}
