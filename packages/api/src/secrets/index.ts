export { SecretBoxError, type SecretBoxErrorCode } from './errors';
export {
  createKeyring,
  ENCRYPTION_KEYS_ENV,
  ENCRYPTION_KEYS_FILE,
  generateKey,
  type Keyring,
  type KeyringChange,
  keyFilePath,
  type LoadKeyringOptions,
  loadKeyring,
  parseKeyList,
  readKeys,
  writeKeys,
} from './keyring';
export {
  type RotateSealedColumnOptions,
  type RotationProgress,
  type RotationResult,
  rotateSealedColumn,
  type SealedRow,
  type SqlQueryable,
  type SqlSealedColumn,
  sqlSealedColumn,
} from './rotate';
export { isSealedBox, needsRotation, open, type SealedBox, seal } from './secret-box';
