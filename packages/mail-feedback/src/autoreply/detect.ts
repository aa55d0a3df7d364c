import { addressOf, firstHeader, type HeaderMap } from '../mime/headers.ts'

// Telling a bounce from an auto-reply from plain mail, on headers and the first words of
// the text. Auto-Submitted alone does not decide it: Exim marks its own bounces
// `auto-replied` too.

const BOUNCE_SENDER =
  /^(mailer-daemon|mail-daemon|maildaemon|postmaster|mailer|mail\.daemon|mdaemon|bounce|bounces|nobody|mail delivery subsystem)$/i

const BOUNCE_SUBJECT =
  /undeliver|undelivered|delivery (status notification|failure|failed|has failed|problem|notification)|returned mail|return(ed)? to sender|failure notice|mail delivery (failed|failure|system|subsystem)|non[- ]?deliver|could not (be )?deliver|delivery report|nicht zustellbar|unzustellbar|rejected|bounced?|mail system error|delivery unsuccessful|message not delivered|permanent (error|failure)|warning: could not send|delayed mail|delivery delayed|unable to deliver|failed delivery|delivery error|mail failure|error sending|echec|no se puede entregar|mail loop|loop (alert|detected)|エラー|不達|配信失敗/i

const BOUNCE_TEXT =
  /could not be delivered|couldn't be delivered|was not delivered|undeliverable|delivery (has )?failed|permanent (error|failure|fatal)|the following (address|recipient)|failed (permanently|recipient)|delivery to the following|unable to deliver|message (could not|can ?not) be (delivered|sent)|returned to sender|smtp error|remote host said|mail delivery (failed|system)|user unknown|mailbox (is )?(full|unavailable)|does not like recipient|transcript of session|delivery status notification|no such user|rejected your message|message was rejected|undelivered mail|invalid user address|error message below/i

const AUTO_SUBJECT =
  /out of (the )?office|auto(matic)?[ -]?(reply|response|answer)|^auto:|vacation|away from|abwesenheit|absence|abwesend|on leave|holiday|congés|ausencia|fuera de la oficina|不在/i

export interface Signals {
  bounce: boolean
  autoReply: boolean
}

export function signals(headers: HeaderMap, subject: string, text: string, envelopeFrom?: string): Signals {
  const from = firstHeader(headers, 'from')
  const fromLocal = (addressOf(from).split('@')[0] ?? '').replace(/[_.]/g, '')
  const fromName = from
    .replace(/<[^<>]*>/, '')
    .replace(/"/g, '')
    .trim()
  const returnPath = firstHeader(headers, 'return-path').replace(/\s/g, '')
  const nullSender = envelopeFrom === '' || returnPath === '<>'
  const head = text.slice(0, 4000)
  const bounce =
    headers.has('x-failed-recipients') ||
    BOUNCE_SENDER.test(fromLocal) ||
    /mail delivery|mailer-daemon|postmaster/i.test(fromName) ||
    BOUNCE_SUBJECT.test(subject) ||
    (nullSender && BOUNCE_TEXT.test(head))
  const autoSubmitted = firstHeader(headers, 'auto-submitted').toLowerCase()
  const precedence = firstHeader(headers, 'precedence').toLowerCase()
  const autoReply =
    autoSubmitted.startsWith('auto-replied') ||
    headers.has('x-autoreply') ||
    headers.has('x-autorespond') ||
    precedence === 'auto_reply' ||
    AUTO_SUBJECT.test(subject)
  return { bounce: bounce && !(autoReply && AUTO_SUBJECT.test(subject) && !BOUNCE_TEXT.test(head)), autoReply }
}
