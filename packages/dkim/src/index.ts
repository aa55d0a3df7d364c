export { activePoolKey, createDkimKey, dkimSealContext, type NewDkimKey, SigningKeys } from './keys.ts'
export { NoPoolKeyError, signAsPool } from './pool.ts'
export { OVERSIGNED_HEADERS, SIGNED_HEADERS, SigningError, type SigningKey, signMessage } from './sign.ts'
