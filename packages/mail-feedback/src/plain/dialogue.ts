import { mailbox } from '../address/mailbox.ts'

// The SMTP dialogue a bounce quotes (`>>> RCPT To:<a@b>` then `<<< 550 5.1.1 …`, sendmail's
// "Transcript of session follows" and the MTAs that copy it): the remote's own answer to
// each recipient, which is more direct than any prose around it. With several recipients
// in one transcript, the words after an address belong to the next command's answer too;
// only the reply lines right after its own RCPT TO say what became of it.

const RCPT = /^[ \t]*>>>[ \t]*rcpt[ \t]+to[ \t]*:[ \t]*<([^<>\s]{1,256})>/i
const REPLY = /^[ \t]*<<<[ \t]?(.*)$/
const REFUSAL = /^[45]\d\d\b/
/** Lines read at most: a transcript is a few dozen; a hostile text gets no further. */
const MAX_LINES = 20_000

/** Recipient address → the refusal its RCPT TO got (reply lines joined), for every refused one. */
export function rcptReplies(text: string): Map<string, string> {
  const out = new Map<string, string>()
  const lines = text.split('\n', MAX_LINES)
  for (let i = 0; i < lines.length; i++) {
    const m = RCPT.exec(lines[i]!)
    if (!m) continue
    const address = mailbox(m[1]!)
    const reply: string[] = []
    for (let j = i + 1; j < lines.length; j++) {
      const r = REPLY.exec(lines[j]!)
      if (!r) break
      reply.push(r[1]!.trim())
      i = j
    }
    if (address && reply.length && REFUSAL.test(reply[0]!) && !out.has(address)) out.set(address, reply.join('\n'))
  }
  return out
}
