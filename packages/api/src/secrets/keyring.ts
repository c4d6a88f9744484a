/**
 * Encryption keys for the secret box. `CODERUNNER_ENCRYPTION_KEYS` holds `kid:base64key` pairs
 * separated by commas (each key 32 bytes; the first encrypts, all decrypt), so that a key can be
 * rotated: put the new one first, keep the old ones until `rotateSealedColumn` has re-encrypted
 * everything, then drop them. Without it, one key is generated on first start and kept in
 * `<dataDir>/encryption-keys` (mode 0600, same format, one pair a line).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { readOrCreateSecretFile } from '../auth/secret-file';
import { SecretBoxError } from './errors';

export const ENCRYPTION_KEYS_ENV = 'CODERUNNER_ENCRYPTION_KEYS';
export const ENCRYPTION_KEYS_FILE = 'encryption-keys';
export const KEY_BYTES = 32;
export const KID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** Safe to log: key material is held apart from this object (see `keyMaterial`). */
export interface Keyring {
  /** Key id that `seal` uses. */
  readonly activeKid: string;
  /** Every key id `open` accepts, the active one first. */
  readonly kids: readonly string[];
  /** Where the keys came from, for messages: `CODERUNNER_ENCRYPTION_KEYS` or the key file's path. */
  readonly source: string;
}

const material = new WeakMap<Keyring, ReadonlyMap<string, Buffer>>();

/** The key of `kid`, for the secret box only. */
export function keyMaterial(keyring: Keyring, kid: string): Buffer | undefined {
  return material.get(keyring)?.get(kid);
}

/** A keyring from keys already in memory (the first is active). */
export function createKeyring(keys: { kid: string; key: Uint8Array }[], source = 'the keyring'): Keyring {
  if (keys.length === 0) throw new SecretBoxError('config', `${source} holds no keys`);
  const map = new Map<string, Buffer>();
  for (const { kid, key } of keys) {
    if (!KID_PATTERN.test(kid)) {
      throw new SecretBoxError(
        'config',
        `${source}: invalid key id (use 1-64 letters, digits, ".", "_" or "-")`,
      );
    }
    if (map.has(kid)) throw new SecretBoxError('config', `${source}: key id "${kid}" appears twice`);
    if (key.length !== KEY_BYTES) {
      throw new SecretBoxError('config', `${source}: key "${kid}" is not ${KEY_BYTES} bytes`);
    }
    map.set(kid, Buffer.from(key));
  }
  const keyring: Keyring = Object.freeze({
    activeKid: keys[0]!.kid,
    kids: Object.freeze([...map.keys()]),
    source,
  });
  material.set(keyring, map);
  return keyring;
}

const BASE64 = /^(?:[A-Za-z0-9+/]+={0,2}|[A-Za-z0-9_-]+)$/;

/**
 * Parses `kid:base64key` pairs separated by commas or new lines (blank entries and `#` comment lines
 * are ignored). Messages name key ids and positions, never what stands where a key should be.
 */
export function parseKeyList(text: string, source: string): Keyring {
  const entries = text
    .split('\n')
    .filter((line) => !line.trim().startsWith('#'))
    .flatMap((line) => line.split(','))
    .map((e) => e.trim())
    .filter((e) => e !== '');
  if (entries.length === 0) throw new SecretBoxError('config', `${source} holds no keys`);
  const keys = entries.map((entry, i) => {
    const colon = entry.indexOf(':');
    if (colon < 1) {
      throw new SecretBoxError('config', `${source}: entry ${i + 1} is not of the form kid:base64key`);
    }
    const kid = entry.slice(0, colon).trim();
    const encoded = entry.slice(colon + 1).trim();
    if (!KID_PATTERN.test(kid)) {
      throw new SecretBoxError(
        'config',
        `${source}: entry ${i + 1} has an invalid key id (use 1-64 letters, digits, ".", "_" or "-")`,
      );
    }
    const key = BASE64.test(encoded) ? Buffer.from(encoded, 'base64') : Buffer.alloc(0);
    if (key.length !== KEY_BYTES) {
      throw new SecretBoxError(
        'config',
        `${source}: key "${kid}" is not ${KEY_BYTES} bytes of base64 (make one with: openssl rand -base64 ${KEY_BYTES})`,
      );
    }
    return { kid, key };
  });
  return createKeyring(keys, source);
}

export interface LoadKeyringOptions {
  env?: NodeJS.ProcessEnv;
  /** The server's data folder, holding `encryption-keys` when the environment gives no keys. */
  dataDir: string;
}

/** Keys from CODERUNNER_ENCRYPTION_KEYS, else from (created on first use) `<dataDir>/encryption-keys`. */
export function loadKeyring({ env = process.env, dataDir }: LoadKeyringOptions): Keyring {
  const fromEnv = env[ENCRYPTION_KEYS_ENV];
  if (fromEnv?.trim()) return parseKeyList(fromEnv, ENCRYPTION_KEYS_ENV);

  const file = path.join(path.resolve(dataDir), ENCRYPTION_KEYS_FILE);
  const text = readOrCreateSecretFile(
    file,
    () =>
      `# CodeRunner encryption keys: kid:base64key, one a line; the first encrypts. Losing this file loses every stored database password.\n` +
      `k${randomBytes(4).toString('hex')}:${randomBytes(KEY_BYTES).toString('base64')}`,
  );
  if (process.platform !== 'win32') {
    const mode = fs.statSync(file).mode & 0o777;
    if (mode & 0o077) {
      throw new SecretBoxError(
        'config',
        `${file} can be read by other users (mode ${mode.toString(8)}): run chmod 600 on it`,
      );
    }
  }
  return parseKeyList(text, file);
}
