export { decodeFrame, encodeErrorFrame, encodeMessageFrame, type Frame } from './frames.ts'
export { createSigningKeyFile, loadSigningKeyFile, SigningKeyError } from './keys.ts'
export { type Label, labelSigningBytes, labelWireObject, type SignedLabel, unsignedLabelObject } from './label.ts'
export {
  encodeLabelFrame,
  labelFrameLength,
  labelWireCbor,
  type WireLabel,
  writeLabelFrame,
} from './label-frame.ts'
export { signLabel, verifyLabel } from './sign.ts'
