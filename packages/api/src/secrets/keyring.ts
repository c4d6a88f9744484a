/**
 * Encryption keys for the secret box. `CODERUNNER_ENCRYPTION_KEYS` holds `kid:base64key` pairs
 * separated by commas (each key 32 bytes; the first encrypts, all decrypt), so that a key can be
 * rotated: add the new one, make it first, keep the old ones until `rotateSealedColumn` has
 * re-encrypted everything, then drop them. Without it, one key is generated on first start and kept in
 * `<dataDir>/encryption-keys` (mode 0600, same format, one pair a line), which running processes
 * follow (see `loadKeyring`).
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

/** Safe to log: key material is held apart from this object (see `activeKey` and `keyFor`). */
export interface Keyring {
  /** Key id that `seal` uses. */
  readonly activeKid: string;
  /** Every key id `open` accepts, the active one first. */
  readonly kids: readonly string[];
  /** Where the keys came from, for messages: `CODERUNNER_ENCRYPTION_KEYS` or the key file's path. */
  readonly source: string;
}

/** One reading of the keys: the first is active. */
interface KeySet {
  readonly activeKid: string;
  readonly kids: readonly string[];
  readonly keys: ReadonlyMap<string, Buffer>;
}

/** How the secret box reaches a keyring's keys: its current set, and a fresh one after a miss. */
interface KeyAccess {
  current(): KeySet;
  /** Called when a box names a key id the current set lacks: the set to try again with. */
  afterMiss(): KeySet;
}

const access = new WeakMap<Keyring, KeyAccess>();

/** The active key id and its key, from one reading of the keys (for the secret box only). */
export function activeKey(keyring: Keyring): { kid: string; key: Buffer | undefined } {
  const set = access.get(keyring)?.current();
  if (!set) return { kid: keyring.activeKid, key: undefined };
  return { kid: set.activeKid, key: set.keys.get(set.activeKid) };
}

/**
 * The key of `kid` (for the secret box only). A keyring read from a file reads it again when the id
 * is unknown: another process may have added the key since.
 */
export function keyFor(keyring: Keyring, kid: string): Buffer | undefined {
  const ring = access.get(keyring);
  if (!ring) return undefined;
  return ring.current().keys.get(kid) ?? ring.afterMiss().keys.get(kid);
}

function keySet(keys: { kid: string; key: Uint8Array }[], source: string): KeySet {
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
  return { activeKid: keys[0]!.kid, kids: Object.freeze([...map.keys()]), keys: map };
}

/** A keyring from keys already in memory (the first is active). */
export function createKeyring(keys: { kid: string; key: Uint8Array }[], source = 'the keyring'): Keyring {
  const set = keySet(keys, source);
  const keyring: Keyring = Object.freeze({ activeKid: set.activeKid, kids: set.kids, source });
  access.set(keyring, { current: () => set, afterMiss: () => set });
  return keyring;
}

const BASE64 = /^(?:[A-Za-z0-9+/]+={0,2}|[A-Za-z0-9_-]+)$/;

/**
 * Parses `kid:base64key` pairs separated by commas or new lines (blank entries and `#` comment lines
 * are ignored). Messages name key ids and positions, never what stands where a key should be.
 */
export function parseKeyList(text: string, source: string): Keyring {
  return createKeyring(parseKeys(text, source), source);
}

function parseKeys(text: string, source: string): { kid: string; key: Buffer }[] {
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
  return keys;
}

/** What a file keyring reports when the key file changes under a running process. */
export type KeyringChange =
  | { kind: 'reloaded'; source: string; activeKid: string; kids: readonly string[] }
  /** The file changed but was not taken: the keys read before stay in use. */
  | { kind: 'refused'; source: string; reason: string };

export interface LoadKeyringOptions {
  env?: NodeJS.ProcessEnv;
  /** The server's data folder, holding `encryption-keys` when the environment gives no keys. */
  dataDir: string;
  /** Told when the key file changes (a file keyring only): for the server's log. */
  onChange?: (change: KeyringChange) => void;
  /** After a box names an unknown key, the file is read again at most this often (default 500 ms). */
  rereadOnMissMs?: number;
}

const HEADER =
  '# CodeRunner encryption keys: kid:base64key, one a line; the first encrypts. Losing this file loses every stored database password.';

/**
 * Keys from CODERUNNER_ENCRYPTION_KEYS, else from (created on first use) `<dataDir>/encryption-keys`.
 * Keys from the environment are fixed for the life of the process. Keys from the file follow it:
 * every use compares the file's identity (inode, size, times) with the one read, and reads it again
 * when it changed, so a new first key is used for the next write; a box naming a key this process has
 * not seen makes it read the file again (at most every `rereadOnMissMs`), for file systems whose
 * attributes lag (NFS). A change is refused (the keys read before stay in use, `onChange` says why)
 * when the file cannot be parsed, can be read by other users, changed while being read, or no longer
 * holds the key in use as the active one (a half-written file, or a rotation that would strand what
 * that key sealed: add the new key, make it first, re-encrypt, and only then remove the old one).
 */
export function loadKeyring({
  env = process.env,
  dataDir,
  onChange,
  rereadOnMissMs = 500,
}: LoadKeyringOptions): Keyring {
  const fromEnv = env[ENCRYPTION_KEYS_ENV];
  if (fromEnv?.trim()) return parseKeyList(fromEnv, ENCRYPTION_KEYS_ENV);

  const file = keyFilePath(dataDir);
  readOrCreateSecretFile(
    file,
    () => `${HEADER}\nk${randomBytes(4).toString('hex')}:${randomBytes(KEY_BYTES).toString('base64')}`,
  );
  const first = readKeyFile(file);
  if ('refused' in first) throw new SecretBoxError('config', first.refused);
  let set = first.set;
  let seen = first.identity;
  let lastRead = Date.now();

  const reread = (force: boolean) => {
    let identity: string;
    try {
      identity = fileIdentity(file);
    } catch (err) {
      identity = `unreadable: ${(err as NodeJS.ErrnoException).code ?? 'error'}`;
    }
    if (!force && identity === seen) return set;
    lastRead = Date.now();
    const read = readKeyFile(file);
    if ('refused' in read) {
      // Said once per version of the file; a file caught mid-write is looked at again on next use.
      if (identity !== seen) onChange?.({ kind: 'refused', source: file, reason: read.refused });
      if (!read.retry) seen = identity;
      return set;
    }
    seen = read.identity;
    if (!read.set.keys.has(set.activeKid)) {
      onChange?.({
        kind: 'refused',
        source: file,
        reason: `${file} no longer holds the active key "${set.activeKid}": kept the keys read before (add the new key beside it, make it first, run rotate-keys, then remove the old one; a restart takes the file as it is)`,
      });
      return set;
    }
    const changed = read.set.activeKid !== set.activeKid || read.set.kids.join(',') !== set.kids.join(',');
    set = read.set;
    if (changed) onChange?.({ kind: 'reloaded', source: file, activeKid: set.activeKid, kids: set.kids });
    return set;
  };

  const keyring: Keyring = Object.freeze({
    get activeKid() {
      return reread(false).activeKid;
    },
    get kids() {
      return reread(false).kids;
    },
    source: file,
  });
  access.set(keyring, {
    current: () => reread(false),
    afterMiss: () => reread(Date.now() - lastRead >= rereadOnMissMs),
  });
  return keyring;
}

export function keyFilePath(dataDir: string): string {
  return path.join(path.resolve(dataDir), ENCRYPTION_KEYS_FILE);
}

/** Inode, size and times: a file replaced by rename or edited in place reads differently. */
function fileIdentity(file: string): string {
  const st = fs.statSync(file, { bigint: true });
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

type KeyFileRead =
  | { set: KeySet; identity: string; keys: { kid: string; key: Buffer }[] }
  /** `retry`: look again on next use even if the file does not change meanwhile. */
  | { refused: string; retry: boolean };

/** The key file, checked (mode 0600, well-formed) and read between two identical stats. */
function readKeyFile(file: string): KeyFileRead {
  try {
    const before = fileIdentity(file);
    if (process.platform !== 'win32') {
      const mode = fs.statSync(file).mode & 0o777;
      if (mode & 0o077) {
        return {
          refused: `${file} can be read by other users (mode ${mode.toString(8)}): run chmod 600 on it`,
          retry: false,
        };
      }
    }
    const text = fs.readFileSync(file, 'utf8');
    if (fileIdentity(file) !== before) {
      return { refused: `${file} changed while it was read (being written?)`, retry: true };
    }
    const keys = parseKeys(text, file);
    return { set: keySet(keys, file), identity: before, keys };
  } catch (err) {
    if (err instanceof SecretBoxError) return { refused: err.message, retry: false };
    return {
      refused: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      retry: false,
    };
  }
}

/** The keys of the key file in `dataDir`, in order (the first is active). Throws SecretBoxError. */
export function readKeys(dataDir: string): { kid: string; key: Buffer }[] {
  const read = readKeyFile(keyFilePath(dataDir));
  if ('refused' in read) throw new SecretBoxError('config', read.refused);
  return read.keys;
}

/**
 * Replaces the key file in `dataDir` by `keys` (the first active), atomically: a temp file (0600) in
 * the same folder renamed over it, so a reader sees the old keys or the new, never half a file.
 */
export function writeKeys(dataDir: string, keys: { kid: string; key: Uint8Array }[]): void {
  keySet(keys, ENCRYPTION_KEYS_FILE); // checked before anything is written
  const file = keyFilePath(dataDir);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const text = `${HEADER}\n${keys.map(({ kid, key }) => `${kid}:${Buffer.from(key).toString('base64')}`).join('\n')}\n`;
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fd = fs.openSync(tmp, 'wx', 0o600);
    try {
      fs.writeFileSync(fd, text);
      fs.fsyncSync(fd); // the keys are on disk before any reader can take them into use
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** A new key with a fresh id (`k` and 8 hex digits). */
export function generateKey(): { kid: string; key: Buffer } {
  return { kid: `k${randomBytes(4).toString('hex')}`, key: randomBytes(KEY_BYTES) };
}
