import { generateKeyPair } from 'node:crypto'

export type DkimKeyPair = {
  /** PKCS#8 PEM: what mailauth signs with. Seal it before it is stored. */
  privateKeyPem: string
  /** The `p=` value of the DNS record: the SubjectPublicKeyInfo, DER, base64. */
  publicKey: string
  bits: number
}

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

/** The TXT record value to publish at `<selector>._domainkey.<domain>`. */
export function dkimTxtRecord(publicKey: string): string {
  return `v=DKIM1; k=rsa; p=${publicKey}`
}
