// Reason classes, in the vocabulary of the bounce corpus (sisimai's), read from what the
// remote said. The order matters: phrases that only one class uses come first, then the
// classes that speak of the sender (block lists, spam, policy), and the loose "mailbox
// unavailable" style phrases last, because a policy rejection often borrows them.
//
// Every pattern here reads what strangers wrote, so each must cost time linear in the text
// (test/redos.test.ts checks them all). "A, and later B" is never written `A.*B`: from
// every A the engine would scan to the end, quadratic in a text that repeats A. `after`
// looks for the first A once, then for B once behind it.

interface Matcher {
  test(text: string): boolean
}

type Rule = readonly [reason: string, pattern: Matcher]

/** A, and somewhere behind the first A, B: what `A.*B` says, in two linear searches. */
function after(first: RegExp, then: RegExp): Matcher {
  return {
    test(text) {
      const m = first.exec(text)
      return !!m && then.test(text.slice(m.index + m[0].length))
    },
  }
}

/** Some A with no `word` after a later space: what `A(?! .*word)` says, in linear searches. */
function unlessLater(first: RegExp, word: string): Matcher {
  return {
    test(text) {
      // When some A is not followed by the word, the last A is not either.
      const last = [...text.matchAll(first)].at(-1)
      if (!last) return false
      const rest = text.slice(last.index + last[0].length)
      const space = rest.indexOf(' ')
      return space < 0 || rest.lastIndexOf(word) <= space
    },
  }
}

const STRONG: Rule[] = [
  // Yahoo's deferral for the sending IP's record, whatever summary the relaying MTA put
  // around it ("sender was rejected", "temporarily deferred").
  ['badreputation', /\bunexpected volume or user complaints\b/],
  // Said of the message (a header too big, a malformed From), not of its size or sender.
  ['contenterror', /\bheaders? (are |is )?too (large|long|big)\b/],
  ['notcompliantrfc', /\bmultiple addresses in (from|to|sender|cc)\b/],
  ['policyviolation', /\bcontent presents a potential security issue\b|\bfor policy reasons\b/],
  ['toomanyconn', /\bconnection frequency limited\b/],
  [
    'rejected',
    /\b(domain of )?sender('s)? (address|domain) .{0,80}(does not exist|not found|rejected|refused|invalid|unknown|unverified)|\bdomain of sender address\b|\bsender (address )?(rejected|denied|verify failed|unknown)\b|\bsender address must exist\b/,
  ],
  ['networkerror', /\bhost not found, try again\b|\btemporary (dns|lookup|name (server|service)) (failure|error)/],
  ['networkerror', after(/\bname service error\b/, /\btry again\b/)],
  ['expired', /\bdid not accept our requests? to connect\b/],
  ['onhold', /\bon hold\b/],
  // 551 is "user not local": the mailbox is elsewhere now (RFC 5321 3.4), whatever the wording.
  ['hasmoved', /\buser not local\b/],
  ['hasmoved', after(/\b551[ -]/, /\bnot (our|a local) user\b/)],
  [
    'userunknown',
    /\b(user|recipient|addressee|mailbox|account|local[- ]?part)s? (name )?(is )?unknown\b|\bunknown (user|recipient|addressee|mailbox|local[- ]?part|e-?mail address)|\bno such (user|mailbox|recipient|account|address|person|local user)|\b(user|recipient|mailbox|account|address|addressee|e-?mail address|email account)( that you tried to reach)? (does not|doesn't|did not|do not) exist|\b(invalid|non-?existent|inexistent) (user|recipient|mailbox|account|address|e-?mail)|\brecipnotfound\b|\bresolver\.adr\.(recipnotfound|recipientnotfound|exrecipnotfound)|\b(user|recipient|mailbox) not (found|exist)|\bno (mailbox|account) (here|by that name|for)|\bnot (a )?(valid|known) (user|recipient|mailbox|address)|\bis not a valid mailbox\b|\bmailbox (does not exist|not found|unknown|name not allowed|is invalid)|\baddress (is )?(unknown|not found)\b|\bno longer (active|valid|in use|exists)\b|\bdisabled or discontinued\b|\bbad destination mailbox\b|\bnot our customer\b|\bthis account (has been|is) (closed|deleted)\b|\b(user|recipient) (is )?not (listed|local|here)\b|\bunknown or illegal alias\b|\binvalid address\b|\brecipient address rejected: (user unknown|undeliverable address|unknown user|access denied|recipient not found)|\baddress rejected\W+(user unknown|unknown)|\bdoesn'?t have an? \S+ account\b|\brecipient (is )?invalid\b|\bunknown address\b|\bnot listed in (the )?(domino |public |global )?(directory|address book)|\brecipient name is not recognized\b|\bunknown recipient\b|\binvalid user address\b|\S@[^\s@]+ (does not exist|not found|is unknown)|\bnot our user\b|\bcheck if (the )?address is correct\b/,
  ],
  // Exchange's words for a directory miss; Gmail's "couldn't be found, or is unable to
  // receive mail" hedges and stays with its reply.
  ['userunknown', /\baddress( you entered)? couldn'?t be found(?!,? or is unable to receive)/],
  ['userunknown', after(/\bunrouteable address\b/, /user|local/)],
  ['userunknown', after(/\bmailbox unavailable\b/, /\b(invalid|unknown|not exist)/)],
  ['hasmoved', /\b(has|have) (been )?moved\b|\baddress (has )?changed\b|\bno longer (at|with) this address\b/],
  [
    'hostunknown',
    /\bhost (or domain name )?(not found|unknown)\b|\bunknown (host|domain)\b|\bno such (host|domain)\b|\bdomain (name )?(not found|does not exist|doesn't exist|unknown|is not (valid|registered))|\bnxdomain\b|\bname or service not known\b|\bunrouteable (mail )?domain\b|\ball relevant mx records point to non-existent hosts\b|\bhost not found\b|\bno (mx|a) records? (for|found)|\bnon-existent (host|domain)\b|\bunroutable address\b|\bunrouteable address\b|\bdomain .{0,60} (does not exist|not found)|\brecipient domain (is )?(invalid|unknown)\b|\bnot a valid domain\b|\billegal host\/domain name\b|\bno route to domain\b|\bhost \S+ not found\b|[a-z0-9-]\.[a-z]{2,} does not exist\b/,
  ],
  [
    'notaccept',
    /\bdoes not accept (e-?)?mail\b|\bnull mx\b|\baccepts no mail\b|\bnot accepting (any )?(e-?)?mail\b|\bdomain (has|with) no mail/,
  ],
  [
    'mailboxfull',
    /\bmailbox (is |was )?full\b|\bmail ?box (is )?(over|exceeded)|\bover ?quota\b|\bquota (is )?(exceeded|exceed|full|violation)|\bexceeded (the |his |her |its )?(storage|quota|mailbox)|\bdisk quota\b|\bnot enough (storage|space)\b|\bmailbox size limit\b|\b(user|recipient|account|mailbox) (is )?over (the |their |its )?(quota|limit|storage)|\bfull mailbox\b|\b(account|inbox|mailbox) (is )?full\b|\bstorage (space )?(is )?(full|exceeded)|\bout of storage\b|\bmailfolder is full\b|\btoo much mail\b|\bexceeds (the )?(storage|mailbox) (size|quota)|\bmailbox has exceeded\b|\bmailbox exceeds (the )?(allowed|maximum|permitted) size\b|\bdisk full\b|\buser'?s? (disk|mailbox) (quota|is full)|メールボックスが一杯|容量(を)?(超|オーバー)/,
  ],
  ['mailboxfull', unlessLater(/\binsufficient (disk )?(space|storage)/g, 'system')],
  [
    'systemfull',
    /\binsufficient system (storage|resources)\b|\bsystem (disk )?(is )?full\b|\bout of disk\b|\bno space left\b/,
  ],
  [
    'mesgtoobig',
    /\bmessage (size )?(is |was )?too (big|large)\b|\bmessage (size|length) exceeds\b|\bexceeds? (the )?(maximum|max\.?|fixed|size limit)|\bsize (limit )?exceeded\b|\bmessage (is )?larger than\b|\btoo large\b/,
  ],
  [
    'suspend',
    /\b(account|mailbox|user|address|recipient)( has been| is| was)? (temporarily )?(disabled|suspended|deactivated|inactive|locked|frozen|blocked by (the )?administrator)|\btemporar(y|ily) locked\b|\binactive (user|account|mailbox)\b|\bsuspended (user|account|mailbox)\b|\bdisabled (user|account|mailbox)\b/,
  ],
  ['virusdetected', /\bvirus|\bmalware\b|\binfected\b|\btrojan\b|\bmalicious\b/],
  [
    'norelaying',
    /\brelay(ing)? (access )?(is )?(denied|not (permitted|allowed)|prohibited|refused)|\bnot permitted to relay\b|\bunable to relay\b|\bwe do not relay\b|\bno relaying\b|\bcannot relay\b|\bnot allowed to relay\b|\brelay not permitted\b|\bnot configured to relay\b|\binsecure mail relay\b|\brelaying (mail )?(to|through) .{0,40} not allowed/,
  ],
  [
    'requireptr',
    /\breverse (dns|lookup|hostname|resolution)|\bptr (record|lookup)\b|\bno ptr\b|\brdns\b|\bcannot find your (reverse )?hostname\b|\bclient host .{0,80}(reverse|hostname lookup)|\bhostname does not resolve\b|\bresolve your address\b|\bmismatches client ip\b/,
  ],
  [
    'authfailure',
    /\bspf\b|\bdkim\b|\bdmarc\b|\bsender policy framework\b|\bunauthenticated (e-?)?mail\b|\bauthentication (check )?failed\b|\bsender authentication\b|\b5\.7\.2[36]\b/,
  ],
  ['authfailure', after(/\bnot authenticated\b/, /domain|sender/)],
  [
    'securityerror',
    /\bauthentication (is )?required\b|\bmust (be )?authenticat|\b(tls|encryption|starttls) (is )?required\b|\bmust issue a starttls\b|\bsecure connection\b|\bsubmission (port )?requires? auth/,
  ],
  ['badreputation', /\b(poor|bad|low) (ip |sender )?reputation\b|\breputation (of|is too)\b/],
  [
    'blocked',
    /\bblack ?list|\bblock ?list|\bdnsbl\b|\b(rbl|spamhaus|spamcop|sorbs|barracuda|cbl|abuseat|uceprotect|invaluement)\b|\blisted (at|in|on|by)\b|\bclient host .{0,80}(rejected|blocked|refused)|\b(ip|host|server|network|domain) .{0,80}(blocked|banned|denied|rejected|not allowed)|\bblocked (using|by|for)\b|\baccess denied\b|\brefused to talk\b|\bnot allowed to send\b|\bhas been blocked\b|\bblocked\b|\bmessages from \S+ (weren'?t|were not) sent\b|\btoo many unwanted messages\b|\bno access from mail server\b/,
  ],
  ['blocked', after(/\bconnection (refused|rejected)\b/, /\b(policy|blocked)/)],
  [
    'spamdetected',
    /\bspam\b|\bspam (content|message)|\bjunk (e-?)?mail\b|\bunsolicited\b|\bbulk (e-?)?mail\b|\buce\b|\blooks? like spam\b|\bscored? (too )?high|\bspam ?score\b|\bcontent (was )?rejected\b/,
  ],
  [
    'speeding',
    /\brate limit|\btoo many (messages|recipients|emails|mails)\b|\bsending rate\b|\bthrottl|\bexceeded .{0,30}rate\b|\btoo fast\b/,
  ],
  ['toomanyconn', /\btoo many (connections|concurrent|simultaneous|sessions)\b|\bconnection limit\b/],
  [
    'rejected',
    /\bsender (address )?(rejected|denied|blocked|not allowed|unknown|verify failed)|\bdomain of sender\b|\bsender domain\b|\b(envelope )?sender .{0,40}(rejected|refused|invalid)|\bmail from .{0,40}(rejected|refused)|\byou are not allowed to send\b|\b'?send mail as'? (feature|account)\b|\bnot authorized to send\b/,
  ],
  [
    'notcompliantrfc',
    /\brfc ?(5322|2822|822)\b|\bnot (rfc|standard)[ -]?compliant\b|\bmultiple (from|to|subject|date) (headers|lines)\b|\bheaders? (are )?not compliant\b/,
  ],
  [
    'policyviolation',
    /\bpolicy\b|\bprohibited\b|\bviolat|\bforbidden\b|\bacceptable use\b|\bnot allowed\b|\bnot permitted\b/,
  ],
  [
    'filtered',
    /\bfiltered\b|\brejected by (the )?(recipient|user|recipient's|destination)|\brecipient refuses\b|\bdelivery not authorized\b|\bmessage (was )?(rejected|refused)\b|\bheader error\b|\brejected (as|because)\b|\brefused by\b|\bdenied by\b/,
  ],
  ['syntaxerror', /\bsyntax error\b|\bcommand (unrecognized|not recognized)\b|\bbad command\b|\bunknown command\b/],
  [
    'mailererror',
    /\bmailer error\b|\bcommand (died|failed)\b|\bprocmail\b|\bpipe to\b|\bx-unix\b|\bprogram (exited|failed)\b|\bunknown mailer\b/,
  ],
  [
    'expired',
    /\bretry (time(out)?|period) (not reached|exceeded|expired)|\b(delivery|queue) (time|period|lifetime) (expired|exceeded)|\bmessage (has )?expired\b|\bexpired\b|\bcould not be delivered (within|for|in)\b|\bgiving up\b|\btoo long in (the )?queue\b|\bqueued too long\b|\bdelivery attempts? (has|have) (failed|been)|\bno (successful|further) delivery attempts?|\bundeliverable for \d+|\bmaximum (time|lifetime)\b|\btime(d)? ?out (waiting|while)|\bmessage timeout\b|\bwill be retried for\b|\bstill undelivered after\b/,
  ],
  [
    'networkerror',
    /\bconnection (timed out|refused|reset|closed|dropped|lost)|\bnetwork (is )?unreachable\b|\bno route to host\b|\btimed out\b|\b(could not|cannot|unable to) connect\b|\blost connection\b|\bdns (lookup|error|failure|resolution)|\btemporary (lookup|dns|name)|\brouting loop\b|\bloop (detected|count)|\btoo many hops\b|\bmail loop\b|\bmailing loop\b|\bhop count exceeded\b/,
  ],
  [
    'systemerror',
    /\bsystem error\b|\binternal (server )?error\b|\bserver error\b|\blocal error\b|\btemporar(y|ily) (failure|error|unavailable|rejected)|\bservice (temporarily |is )?(unavailable|not available)\b|\bresources temporarily\b|\btry again later\b|\bqueue file write error\b|\bi\/o error\b|\bout of memory\b|\bprocessing error\b|\btransaction failed\b|\bservice (currently )?unavailable\b|\bcould not load\b|\bduplicated message-id\b/,
  ],
]

/** Weak phrases, tried only when nothing above matched. */
const WEAK: Rule[] = [
  [
    'userunknown',
    /\bmailbox (unavailable|not available)\b|\brecipient (address )?rejected\b|\brecipient not (accepted|allowed)\b|\bno such\b|\bnot a valid\b|\binvalid recipient\b|\bbad recipient\b|\baddress rejected\b/,
  ],
  ['contenterror', /\bcontent\b|\bmime\b|\bencoding\b|\b8-?bit\b|\bcharacter set\b/],
  // Google Groups refuses a post in the sender's language ("the group does not exist or you
  // may not post to it") and always links its help: a refusal of the sender, not the address.
  ['rejected', /\bgroups\.google\.com\/support\b/],
]

export function reasonFromText(text: string): string {
  // A multi-line reply repeats its codes on every line (`…a potential\n552-5.7.0 security
  // issue`); inside a sentence they would split the phrase.
  const t = text
    .toLowerCase()
    .replace(/\s+/g, ' ')
    .replace(/(?<=[a-z,;] )[45]\d\d[ -]\d\.\d{1,3}\.\d{1,3} (?=[a-z])/g, '')
  if (!t.trim()) return ''
  for (const [reason, pattern] of STRONG) if (pattern.test(t)) return reason
  for (const [reason, pattern] of WEAK) if (pattern.test(t)) return reason
  return ''
}

/** What an enhanced status code means on its own (RFC 3463 and the big providers' extensions). */
export function reasonFromStatus(status: string): string {
  const m = /^([245])\.(\d+)\.(\d+)$/.exec(status)
  if (!m) return ''
  const sub = `${m[2]}.${m[3]}`
  const table: Record<string, string> = {
    '1.1': 'userunknown',
    '1.3': 'userunknown',
    '1.10': 'userunknown',
    '1.2': 'hostunknown',
    '1.6': 'hasmoved',
    '1.7': 'rejected',
    '1.8': 'rejected',
    '2.1': 'suspend',
    '2.2': 'mailboxfull',
    '2.3': 'exceedlimit',
    '2.4': 'systemerror',
    '3.1': 'systemfull',
    '3.4': 'mesgtoobig',
    '4.1': 'networkerror',
    '4.2': 'networkerror',
    '4.3': 'systemerror',
    // Unable to route: no MX and no address for the domain, which then accepts no mail.
    '4.4': 'notaccept',
    '4.6': 'networkerror',
    '4.7': 'expired',
    '5.0': 'syntaxerror',
    '7.1': 'blocked',
    '7.8': 'securityerror',
    '7.13': 'suspend',
    '7.23': 'authfailure',
    '7.24': 'authfailure',
    '7.25': 'requireptr',
    '7.26': 'authfailure',
    '7.27': 'notaccept',
    '7.509': 'authfailure',
    '7.54': 'norelaying',
  }
  const exact = table[sub]
  if (exact) return exact
  switch (m[2]) {
    case '3':
      return 'systemerror'
    case '4':
      return 'networkerror'
    case '5':
      return 'syntaxerror'
    case '6':
      return 'contenterror'
    case '7':
      return 'policyviolation'
    default:
      return ''
  }
}

/** Classes where the address itself is bad: suppressing it is right. */
const ADDRESS_BAD = new Set(['userunknown', 'hostunknown', 'hasmoved'])

/**
 * Hard only when the address is permanently bad, and only on a permanent failure: a 4xx
 * "user unknown" (a directory briefly out of sync) must not suppress anybody.
 */
export function isHard(reason: string, status: string, replyCode: string, action = ''): boolean {
  const cls = status[0] ?? replyCode[0] ?? ''
  const permanent = cls === '5' || (cls === '' && !/delayed|delivered|relayed|expanded/.test(action))
  if (!permanent) return false
  if (ADDRESS_BAD.has(reason)) return true
  return reason === 'notaccept' && (status.startsWith('5') || replyCode.startsWith('5'))
}
