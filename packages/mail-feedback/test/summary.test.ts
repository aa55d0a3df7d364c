import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { summarizeMessage } from '../src/index.ts'

describe('summarizeMessage', () => {
  it('decodes encoded words, unfolds fields, and reads only the header block', () => {
    const raw = Buffer.from(
      [
        'From: =?iso-8859-1?q?Ren=E9?= <rene@elsewhere.example>',
        'Subject: =?utf-8?b?w4RyZ2Vy?=',
        '  continued',
        'Date: Wed, 25 Nov 2026 12:00:00 +0000',
        'Message-ID: <a@b>',
        '',
        'Subject: not a header, the body',
      ].join('\r\n'),
    )
    assert.deepEqual(summarizeMessage(raw), {
      subject: 'Ärger continued',
      from: 'René <rene@elsewhere.example>',
      date: 'Wed, 25 Nov 2026 12:00:00 +0000',
      messageId: '<a@b>',
    })
  })

  it('reads raw UTF-8 headers (SMTPUTF8) as UTF-8 and stray 8-bit bytes as Latin-1; a missing field is empty', () => {
    assert.equal(summarizeMessage(Buffer.from('Subject: Grüße\n\nx')).subject, 'Grüße')
    assert.equal(summarizeMessage(Buffer.from('Subject: caf\xe9\n\nx', 'latin1')).subject, 'café')
    assert.deepEqual(summarizeMessage(Buffer.from('no headers at all')), {
      subject: '',
      from: '',
      date: '',
      messageId: '',
    })
  })
})
