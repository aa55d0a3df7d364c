import MailComposer from 'nodemailer/lib/mail-composer'
import type { SendRequest } from './schema.ts'

/**
 * The request as an RFC 5322 message with CRLF line ends, built by nodemailer's MailComposer
 * (encoded words, MIME structure, boundaries, attachment encoding). Only strings and decoded
 * buffers go in, and file and URL access are off: nothing in a request can make the relay
 * read a file or fetch a URL. `to` and `cc` are the request's addresses that are addresses;
 * what is then signed and spooled is the submission policy's business, as for SMTP.
 */
export async function composeMessage(
  req: SendRequest,
  header: { to: string[]; cc: string[] },
  category: string | undefined,
): Promise<Buffer> {
  const headers: Record<string, string> = { ...req.headers }
  // The category travels as X-Atmos-Category, which the relay reads and removes (rewrite.ts).
  for (const name of Object.keys(headers)) if (name.toLowerCase() === 'x-atmos-category') delete headers[name]
  if (category) headers['X-Atmos-Category'] = category
  const composer = new MailComposer({
    from: typeof req.from === 'string' ? req.from : { name: req.from.name, address: req.from.address },
    to: header.to,
    ...(header.cc.length ? { cc: header.cc } : {}),
    ...(req.replyTo ? { replyTo: req.replyTo } : {}),
    subject: req.subject,
    ...(req.text !== undefined ? { text: req.text } : {}),
    ...(req.html !== undefined ? { html: req.html } : {}),
    headers,
    attachments: (req.attachments ?? []).map((a) => ({
      filename: a.filename,
      content: Buffer.from(a.content, 'base64'),
      ...(a.contentType ? { contentType: a.contentType } : {}),
    })),
    disableFileAccess: true,
    disableUrlAccess: true,
    newline: 'win',
  })
  return composer.compile().build()
}
