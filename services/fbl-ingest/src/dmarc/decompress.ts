import { promisify } from 'node:util'
import { gunzip } from 'node:zlib'
import { type Entry, fromBuffer, type Options, type ZipFile } from 'yauzl'
import type { ReportFile } from './attachment.ts'
import { type ReportLimits, ReportRefused } from './limits.ts'

// The report's XML out of its zip or gzip, never more than maxUncompressed bytes of it and
// never more than maxRatio times what was sent: a bomb (42.zip, a gigabyte of zeros
// gzipped to a megabyte) stops at the limit, with zlib's own output bound doing the work.

const gunzipAsync = promisify(gunzip)

export async function reportXml(file: ReportFile, limits: ReportLimits): Promise<Buffer> {
  switch (file.format) {
    case 'xml':
      if (file.content.length > limits.maxUncompressed) {
        throw new ReportRefused(`report of ${file.content.length} bytes exceeds the limit of ${limits.maxUncompressed}`)
      }
      return file.content
    case 'gzip':
      return checkRatio(await gunzipBounded(file.content, limits), file.content.length, limits)
    case 'zip':
      return checkRatio(await unzipOne(file.content, limits), file.content.length, limits)
  }
}

async function gunzipBounded(content: Buffer, limits: ReportLimits): Promise<Buffer> {
  // The output bound also stops a ratio bomb early: nothing past it is ever inflated.
  const bound = Math.min(limits.maxUncompressed, content.length * limits.maxRatio)
  try {
    return await gunzipAsync(content, { maxOutputLength: bound })
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError) {
      throw new ReportRefused(
        `gzip expands past ${bound} bytes (limit ${limits.maxUncompressed}, ratio ${limits.maxRatio})`,
      )
    }
    throw new ReportRefused(`unreadable gzip: ${e.message}`)
  }
}

function checkRatio(xml: Buffer, compressed: number, limits: ReportLimits): Buffer {
  if (xml.length > compressed * limits.maxRatio) {
    throw new ReportRefused(`expands ${Math.round(xml.length / compressed)} times (limit ${limits.maxRatio})`)
  }
  return xml
}

const ZIP_OPTIONS: Options = {
  lazyEntries: true,
  // The sizes the archive declares are checked against what really comes out.
  validateEntrySizes: true,
  decodeStrings: true,
  strictFileNames: false,
  // Closed by us once the entry is read (an early close would refuse openReadStream).
  autoClose: false,
}

/** The one `.xml` entry of a zip, read as a stream that stops at the limit. */
async function unzipOne(content: Buffer, limits: ReportLimits): Promise<Buffer> {
  const zip = await new Promise<ZipFile>((resolve, reject) =>
    fromBuffer(content, ZIP_OPTIONS, (err, z) =>
      err ? reject(new ReportRefused(`unreadable zip: ${err.message}`)) : resolve(z),
    ),
  )
  try {
    if (zip.entryCount > limits.maxZipEntries) {
      throw new ReportRefused(`zip holds ${zip.entryCount} entries (at most ${limits.maxZipEntries})`)
    }
    const xmlEntries = (await entriesOf(zip)).filter((e) => !e.fileName.endsWith('/') && /\.xml$/i.test(e.fileName))
    if (xmlEntries.length !== 1) {
      throw new ReportRefused(`zip holds ${xmlEntries.length} .xml entries (a report is exactly one)`)
    }
    const entry = xmlEntries[0]!
    if (entry.isEncrypted()) throw new ReportRefused('zip entry is encrypted')
    if (entry.uncompressedSize > limits.maxUncompressed) {
      throw new ReportRefused(`zip entry declares ${entry.uncompressedSize} bytes (limit ${limits.maxUncompressed})`)
    }
    if (entry.uncompressedSize > Math.max(entry.compressedSize, 1) * limits.maxRatio) {
      throw new ReportRefused(
        `zip entry expands ${Math.round(entry.uncompressedSize / Math.max(entry.compressedSize, 1))} times (limit ${limits.maxRatio})`,
      )
    }
    return await readEntry(zip, entry, limits.maxUncompressed)
  } finally {
    zip.close()
  }
}

/** Every entry's header (the central directory only: nothing is inflated here). */
function entriesOf(zip: ZipFile): Promise<Entry[]> {
  return new Promise((resolve, reject) => {
    const entries: Entry[] = []
    zip.on('entry', (e: Entry) => {
      entries.push(e)
      zip.readEntry()
    })
    zip.once('end', () => resolve(entries))
    zip.once('error', (err: Error) => reject(new ReportRefused(`unreadable zip: ${err.message}`)))
    zip.readEntry()
  })
}

function readEntry(zip: ZipFile, entry: Entry, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    zip.openReadStream(entry, (err, stream) => {
      if (err) return reject(new ReportRefused(`unreadable zip entry: ${err.message}`))
      const chunks: Buffer[] = []
      let size = 0
      stream.on('data', (chunk: Buffer) => {
        size += chunk.length
        // validateEntrySizes already holds it to the declared size; this holds it to ours regardless.
        if (size > max) {
          stream.destroy()
          reject(new ReportRefused(`zip entry expands past ${max} bytes`))
          return
        }
        chunks.push(chunk)
      })
      stream.once('error', (e: Error) => reject(new ReportRefused(`unreadable zip entry: ${e.message}`)))
      stream.once('end', () => resolve(Buffer.concat(chunks, size)))
    })
  })
}
