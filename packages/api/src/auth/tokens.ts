import { createHash, createSecretKey } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';

/**
 * Session tokens: HS256 JWTs carrying the user id and a fingerprint of the user's current password
 * hash, so that changing the password ends every session issued before it.
 */
export interface TokenService {
  issue(user: { id: string; passwordHash: string }): Promise<string>;
  /** The claims of a valid token, or null for an expired, tampered, foreign or malformed one. */
  verify(token: string): Promise<{ userId: string; passwordFingerprint: string } | null>;
  fingerprint(passwordHash: string): string;
}

const ISSUER = 'coderunner';
/** Longer tokens are not ours; refusing them early avoids work on hostile input. */
const MAX_TOKEN_LENGTH = 2048;

export function createTokenService(secretBytes: Uint8Array, ttlSeconds: number): TokenService {
  // One KeyObject for the process: jose would otherwise import the raw secret on every call.
  const secret = createSecretKey(secretBytes);
  const fingerprint = (passwordHash: string) =>
    createHash('sha256').update(passwordHash).digest('base64url').slice(0, 22);
  return {
    fingerprint,
    issue: (user) =>
      new SignJWT({ pwf: fingerprint(user.passwordHash) })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject(user.id)
        .setIssuer(ISSUER)
        .setIssuedAt()
        .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
        .sign(secret),
    async verify(token) {
      if (!token || token.length > MAX_TOKEN_LENGTH) return null;
      try {
        const { payload } = await jwtVerify(token, secret, { algorithms: ['HS256'], issuer: ISSUER });
        if (typeof payload.sub !== 'string' || typeof payload.pwf !== 'string') return null;
        return { userId: payload.sub, passwordFingerprint: payload.pwf };
      } catch (err) {
        if (err instanceof joseErrors.JOSEError || err instanceof TypeError) return null;
        throw err;
      }
    },
  };
}
