export {
  activePoolKey,
  createDkimKey,
  createDomainKeys,
  type DkimAlgorithm,
  dkimSealContext,
  domainSelectors,
  type NewDkimKey,
  PoolKeyUnavailableError,
  resealPoolKeys,
  type SigningKeyrings,
  SigningKeys,
} from './keys.ts'
export { NoPoolKeyError, signAsPool } from './pool.ts'
export { OVERSIGNED_HEADERS, SIGNED_HEADERS, SigningError, type SigningKey, signMessage } from './sign.ts'
