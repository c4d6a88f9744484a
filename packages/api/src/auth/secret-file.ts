import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Read a secret kept in the data folder, creating it (mode 0600, atomically: the first of several
 * processes starting at once wins and the others read its value) when it does not exist yet.
 */
export function readOrCreateSecretFile(
  file: string,
  create: () => string = () => randomBytes(32).toString('base64url'),
): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, `${create()}\n`, { mode: 0o600 });
  try {
    fs.linkSync(tmp, file); // fails with EEXIST when another process created it first
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return fs.readFileSync(file, 'utf8').trim();
}
