export { decodeFrame, encodeErrorFrame, encodeMessageFrame, type Frame } from './frames.ts'
export { createSigningKeyFile, loadSigningKeyFile, SigningKeyError } from './keys.ts'
export { type Label, labelSigningBytes, labelWireObject, type SignedLabel, unsignedLabelObject } from './label.ts'
export { signLabel, verifyLabel } from './sign.ts'
