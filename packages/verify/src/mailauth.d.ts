// mailauth ships types for its public entry points only; these are the internals the
// checks reuse (CommonJS modules, loaded through Node's ESM interop).

declare module 'mailauth/lib/dmarc/get-dmarc-record.js' {
  export type DmarcResolver = (name: string, type: string) => Promise<unknown>
  /** Parsed tags (names lower-cased; p/sp/np/adkim/aspf/fo/rf/t/psd values lower-cased), plus the record as `rr`. */
  export type ParsedDmarcRecord = Record<string, string | number | undefined> & { rr: string }
  export type RecordLookup = (name: string) => Promise<ParsedDmarcRecord | false>
  export type DiscoveredPolicy = {
    record: ParsedDmarcRecord | false
    recordDomain: string | null
    orgDomain: string | null
    orgRecord: ParsedDmarcRecord | false | null
    error?: unknown
  }
  export function createRecordLookup(resolver: DmarcResolver, opts?: { strict?: boolean }): RecordLookup
  export function discoverPolicy(domain: string, lookup: RecordLookup): Promise<DiscoveredPolicy>
  export function parseDmarcRecord(
    txt: string,
    opts?: { strict?: boolean; warnings?: Set<string> },
  ): ParsedDmarcRecord | null
}

declare module 'mailauth/lib/parse-dkim-headers.js' {
  export type TagList = {
    /** Every tag-spec in order, names as written, values with whitespace folded. */
    tags: { name: string; value: string }[]
    /** Why the tag-list is not valid RFC 6376 syntax; empty when it is. */
    syntaxErrors: string[]
  }
  export function parseTagList(value: string, options?: { strict?: boolean }): TagList
}
