// Real-shaped reports for the end-to-end tests, built around the spooled message they concern.

export function dsn(opts: {
  to: string
  recipient: string
  action?: string
  status: string
  diagnostic: string
  returnedHeaders?: string
}): string {
  const b = 'dsn-boundary-1'
  return [
    'From: Mail Delivery System <MAILER-DAEMON@mx.remote.example>',
    `To: ${opts.to}`,
    'Subject: Undelivered Mail Returned to Sender',
    'Date: Mon, 1 Jan 2024 10:00:00 +0000',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${b}"`,
    '',
    `--${b}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    'This is the mail system at host mx.remote.example.',
    '',
    "I'm sorry to have to inform you that your message could not",
    'be delivered to one or more recipients.',
    '',
    `<${opts.recipient}>: host mx.remote.example said: ${opts.diagnostic}`,
    '',
    `--${b}`,
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; mx.remote.example',
    '',
    `Final-Recipient: rfc822; ${opts.recipient}`,
    `Original-Recipient: rfc822; ${opts.recipient}`,
    `Action: ${opts.action ?? 'failed'}`,
    `Status: ${opts.status}`,
    'Remote-MTA: dns; mx.remote.example',
    `Diagnostic-Code: smtp; ${opts.diagnostic}`,
    '',
    `--${b}`,
    'Content-Type: text/rfc822-headers',
    '',
    opts.returnedHeaders ?? 'Subject: hello',
    '',
    `--${b}--`,
    '',
  ].join('\r\n')
}

export function arf(opts: {
  to: string
  returnedHeaders: string
  feedbackType?: string
  originalRcptTo?: string | string[]
  originalMailFrom?: string
}): string {
  const b = 'arf-boundary-1'
  return [
    'From: Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>',
    `To: ${opts.to}`,
    'Subject: FW: Your verification code',
    'Date: Mon, 1 Jan 2024 10:00:00 +0000',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=feedback-report; boundary="${b}"`,
    '',
    `--${b}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    'This is an email abuse report for an email message received from IP 192.0.2.10.',
    '',
    `--${b}`,
    'Content-Type: message/feedback-report',
    '',
    `Feedback-Type: ${opts.feedbackType ?? 'abuse'}`,
    'User-Agent: Yahoo!-Mail-Feedback/2.0',
    'Version: 1',
    ...(opts.originalMailFrom ? [`Original-Mail-From: <${opts.originalMailFrom}>`] : []),
    ...[opts.originalRcptTo ?? []].flat().map((a) => `Original-Rcpt-To: <${a}>`),
    'Arrival-Date: Mon, 1 Jan 2024 09:59:00 +0000',
    'Source-IP: 192.0.2.10',
    'Reported-Domain: pool.example',
    '',
    `--${b}`,
    'Content-Type: text/rfc822-headers',
    '',
    opts.returnedHeaders,
    '',
    `--${b}--`,
    '',
  ].join('\r\n')
}
