export {
  activePoolKey,
  createDkimKey,
  dkimSealContext,
  type NewDkimKey,
  PoolKeyUnavailableError,
  resealPoolKeys,
  type SigningKeyrings,
  SigningKeys,
} from './keys.ts'
export { NoPoolKeyError, signAsPool } from './pool.ts'
export { OVERSIGNED_HEADERS, SIGNED_HEADERS, SigningError, type SigningKey, signMessage } from './sign.ts'
