/** The header block is looked at up to here: a header this far down is no header of ours to honour. */
const MAX_HEADER_BYTES = 256 * 1024

/**
 * Whether the message carries `TLS-Required: No` (RFC 8689 section 5): its sender asks that
 * it be delivered even where the recipient domain's TLS policy (MTA-STS, DANE) cannot be met,
 * typically to report that very failure to the domain's postmaster. Folded lines are joined;
 * the name is case-insensitive, the value `No` too.
 */
export function hasTlsRequiredNo(body: Buffer): boolean {
  const head = body.subarray(0, MAX_HEADER_BYTES)
  let end = head.indexOf('\r\n\r\n')
  if (end < 0) end = head.indexOf('\n\n')
  const block = head.subarray(0, end < 0 ? head.length : end).toString('latin1')
  return /^TLS-Required:[ \t]*No[ \t]*$/im.test(block.replace(/\r?\n[ \t]+/g, ' '))
}
