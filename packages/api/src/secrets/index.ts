export { SecretBoxError, type SecretBoxErrorCode } from './errors';
export {
  createKeyring,
  ENCRYPTION_KEYS_ENV,
  ENCRYPTION_KEYS_FILE,
  type Keyring,
  type LoadKeyringOptions,
  loadKeyring,
  parseKeyList,
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
