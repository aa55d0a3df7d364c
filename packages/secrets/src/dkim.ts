import { generateKeyPair } from 'node:crypto'

export type DkimKeyPair = {
  /** PKCS#8 PEM: what mailauth signs with. Seal it before it is stored. */
  privateKeyPem: string
  /**
   * The `p=` value of the DNS record, base64: for RSA the SubjectPublicKeyInfo (DER), for
   * Ed25519 the raw 32-byte public key (RFC 8463 3: not wrapped in a SubjectPublicKeyInfo).
   */
  publicKey: string
  /** The key size: the modulus for RSA, 256 for Ed25519. */
  bits: number
}

/** The DKIM key types the relay issues: its tag in the record (`k=`) and its signing algorithm. */
export type DkimKeyType = 'rsa' | 'ed25519'

/** A fresh RSA DKIM keypair (2048 bits: what every receiver accepts and fits one TXT record). */
export function generateDkimKeyPair(bits = 2048): Promise<DkimKeyPair> {
  return new Promise((resolve, reject) =>
    generateKeyPair(
      'rsa',
      {
        modulusLength: bits,
        publicKeyEncoding: { type: 'spki', format: 'der' },
        privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      },
      (err, publicKey, privateKey) =>
        err ? reject(err) : resolve({ privateKeyPem: privateKey, publicKey: publicKey.toString('base64'), bits }),
    ),
  )
}

/** The fixed 12-byte DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): what p= leaves out. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

/** A fresh Ed25519 DKIM keypair (RFC 8463); p= is the raw public key. */
export function generateEd25519DkimKeyPair(): Promise<DkimKeyPair> {
  return new Promise((resolve, reject) =>
    generateKeyPair(
      'ed25519',
      { publicKeyEncoding: { type: 'spki', format: 'der' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } },
      (err, publicKey, privateKey) => {
        if (err) return reject(err)
        if (publicKey.length !== 44 || !publicKey.subarray(0, 12).equals(ED25519_SPKI_PREFIX)) {
          return reject(new Error('unexpected Ed25519 public key encoding'))
        }
        resolve({ privateKeyPem: privateKey, publicKey: publicKey.subarray(12).toString('base64'), bits: 256 })
      },
    ),
  )
}

/** The TXT record value to publish at `<selector>._domainkey.<domain>`. */
export function dkimTxtRecord(publicKey: string, type: DkimKeyType = 'rsa'): string {
  return `v=DKIM1; k=${type}; p=${publicKey}`
}
