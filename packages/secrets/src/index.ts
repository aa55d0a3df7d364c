export {
  type DkimKeyPair,
  type DkimKeyType,
  dkimTxtRecord,
  generateDkimKeyPair,
  generateEd25519DkimKeyPair,
} from './dkim.ts'
export { createSecretFile, readSecretFile, SecretFileError, secretFileProblem } from './files.ts'
export {
  DEFAULT_SCRYPT,
  dummyPasswordHash,
  generatePassword,
  hashPassword,
  type ScryptParams,
  verifyPassword,
} from './password.ts'
export { createKeyringFile, type Kek, Keyring, loadKeyring, newKekLine, parseKeyring } from './seal.ts'
