/**
 * AES-256-GCM for small JSON secrets (a deployment's database connection info), stored in a JSONB
 * column as `{ v, kid, iv, tag, ct }`: format version, key id, 12-byte random IV, 16-byte tag and
 * ciphertext (base64). The key id lets keys rotate; the additional data binds a box to its format,
 * its key id and, through `aad`, to its row, so a box copied onto another row does not open.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { SecretBoxError } from './errors';
import { activeKey, type Keyring, KID_PATTERN, keyFor } from './keyring';

export interface SealedBox {
  v: 1;
  kid: string;
  iv: string;
  tag: string;
  ct: string;
}

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const FIELDS = ['ct', 'iv', 'kid', 'tag', 'v'];

function additionalData(kid: string, aad: string | undefined): Buffer {
  return Buffer.from(JSON.stringify(['coderunner-secret-box', VERSION, kid, aad ?? null]), 'utf8');
}

/** Is `value` a sealed box of the current format (shape only: it says nothing of whether it opens)? */
export function isSealedBox(value: unknown): value is SealedBox {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const box = value as Record<string, unknown>;
  const keys = Object.keys(box).sort();
  return (
    keys.length === FIELDS.length &&
    keys.every((k, i) => k === FIELDS[i]) &&
    box.v === VERSION &&
    typeof box.kid === 'string' &&
    KID_PATTERN.test(box.kid) &&
    [box.iv, box.tag, box.ct].every((f) => typeof f === 'string' && BASE64.test(f))
  );
}

/** Encrypts `plaintext` (written as JSON) with the keyring's active key. */
export function seal(keyring: Keyring, plaintext: object, aad?: string): SealedBox {
  const { kid, key } = activeKey(keyring);
  if (!key) throw new SecretBoxError('config', `${keyring.source}: the active key "${kid}" is missing`);
  let json: string | undefined;
  try {
    json = JSON.stringify(plaintext);
  } catch {
    json = undefined;
  }
  if (typeof plaintext !== 'object' || plaintext === null || json === undefined) {
    throw new SecretBoxError('not-serializable', 'cannot encrypt: the value is not a JSON object');
  }
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(additionalData(kid, aad));
  const ct = Buffer.concat([cipher.update(json, 'utf8'), cipher.final()]);
  return {
    v: VERSION,
    kid,
    iv: iv.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
    ct: ct.toString('base64'),
  };
}

/** Decrypts a box sealed by `seal` with the same `aad`; throws SecretBoxError, never returns garbage. */
export function open<T = Record<string, unknown>>(keyring: Keyring, box: unknown, aad?: string): T {
  if (
    typeof box === 'object' &&
    box !== null &&
    'v' in box &&
    box.v !== VERSION &&
    typeof box.v === 'number'
  ) {
    throw new SecretBoxError(
      'unsupported-version',
      `the value is encrypted in format version ${box.v}, which this version of CodeRunner cannot read`,
    );
  }
  if (!isSealedBox(box)) {
    throw new SecretBoxError('malformed', 'not an encrypted value (expected {v, kid, iv, tag, ct})');
  }
  const key = keyFor(keyring, box.kid);
  if (!key) {
    throw new SecretBoxError(
      'unknown-key',
      `encrypted with key "${box.kid}", which is not in ${keyring.source}`,
    );
  }
  const iv = Buffer.from(box.iv, 'base64');
  const tag = Buffer.from(box.tag, 'base64');
  const altered = () =>
    new SecretBoxError('cannot-decrypt', 'cannot decrypt: the data was altered or the key is wrong');
  if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw altered();
  let json: string;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(additionalData(box.kid, aad));
    decipher.setAuthTag(tag);
    json = Buffer.concat([decipher.update(Buffer.from(box.ct, 'base64')), decipher.final()]).toString('utf8');
  } catch {
    throw altered();
  }
  try {
    return JSON.parse(json) as T;
  } catch {
    throw altered();
  }
}

/** Was the box sealed with a key other than the active one? */
export function needsRotation(keyring: Keyring, box: SealedBox): boolean {
  return box.kid !== keyring.activeKid;
}
