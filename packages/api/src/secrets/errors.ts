export type SecretBoxErrorCode =
  /** CODERUNNER_ENCRYPTION_KEYS or the key file is malformed. */
  | 'config'
  /** The value is not a sealed box. */
  | 'malformed'
  /** A sealed box of a format version this code cannot read. */
  | 'unsupported-version'
  /** Sealed with a key id the keyring does not have. */
  | 'unknown-key'
  /** Authentication failed: altered data, wrong key, or a box moved to another row. */
  | 'cannot-decrypt'
  /** The value to seal cannot be written as JSON. */
  | 'not-serializable';

/** Messages never contain key material nor decrypted data. */
export class SecretBoxError extends Error {
  override name = 'SecretBoxError';
  constructor(
    readonly code: SecretBoxErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
