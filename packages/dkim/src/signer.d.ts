// mailauth's DkimSigner, which `dkimSign` wraps: not part of its typed API, used by
// sign.ts to over-sign From (see there).
declare module 'mailauth/lib/dkim/dkim-signer.js' {
  import { Writable } from 'node:stream'
  import type { DKIMSignOptions } from 'mailauth'

  type ParsedHeader = { key: string | null; casedKey: string | undefined; line: Buffer }

  export class DkimSigner extends Writable {
    constructor(options: Partial<DKIMSignOptions> & { signatureData: DKIMSignOptions[] })
    signatureHeaders: string[]
    errors: Array<{ err: Error; signingDomain?: string; selector?: string }>
    messageHeaders(headers: { parsed: ParsedHeader[]; original: Buffer }): Promise<void>
  }
}

declare module 'mailauth/lib/tools.js' {
  import type { Writable } from 'node:stream'
  export function writeToStream(stream: Writable, input: Buffer | string): Promise<void>
}
