import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (the format of `pg_authid.rolpassword`).
 * Sending the verifier instead of the password keeps the password out of the server's statement
 * logs and pg_stat_statements. `password` must be ASCII (SASLprep is then the identity).
 */
export function scramSha256Verifier(password: string, iterations = 4096): string {
  if (!/^[\x20-\x7e]*$/.test(password))
    throw new Error('scramSha256Verifier expects a printable ASCII password');
  const salt = randomBytes(16);
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
