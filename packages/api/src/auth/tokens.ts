import { createHash, createSecretKey } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { LRUCache } from 'lru-cache';

/**
 * Session tokens: HS256 JWTs carrying the user id and a fingerprint of the user's current password
 * hash, so that changing the password ends every session issued before it.
 */
export interface TokenService {
  issue(user: { id: string; passwordHash: string }): Promise<string>;
  /** The claims of a valid token, or null for an expired, tampered, foreign or malformed one. */
  verify(token: string): Promise<Claims | null>;
  fingerprint(passwordHash: string): string;
  /** How long an issued token is valid. */
  ttlSeconds: number;
}

const ISSUER = 'coderunner';
/** How long a verified token is remembered at most (never past its own expiry). */
const VERIFIED_TTL_MS = 5 * 60_000;
/** How many verified tokens are remembered (about 400 bytes each). */
const VERIFIED_MAX = 10_000;

interface Claims {
  userId: string;
  passwordFingerprint: string;
}
/** Longer tokens are not ours; refusing them early avoids work on hostile input. */
const MAX_TOKEN_LENGTH = 2048;

export function createTokenService(secretBytes: Uint8Array, ttlSeconds: number): TokenService {
  // One KeyObject for the process: jose would otherwise import the raw secret on every call.
  const secret = createSecretKey(secretBytes);
  // Tokens whose signature and claims were verified, so that a client calling again with the same
  // token skips the JWT parsing and HMAC (a tenth of a projects.list request in the overhead profile).
  // Only valid tokens enter, each until its own expiry at the latest. What can end a session early — a
  // password change, a deleted user — is checked against the user row on every request, not here.
  const verified = new LRUCache<string, Claims>({ max: VERIFIED_MAX, ttl: VERIFIED_TTL_MS });
  const fingerprint = (passwordHash: string) =>
    createHash('sha256').update(passwordHash).digest('base64url').slice(0, 22);
  return {
    fingerprint,
    ttlSeconds,
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
      const known = verified.get(token);
      if (known) return known;
      try {
        const { payload } = await jwtVerify(token, secret, { algorithms: ['HS256'], issuer: ISSUER });
        if (typeof payload.sub !== 'string' || typeof payload.pwf !== 'string') return null;
        const claims = { userId: payload.sub, passwordFingerprint: payload.pwf };
        const ttl = Math.min(VERIFIED_TTL_MS, (payload.exp ?? 0) * 1000 - Date.now());
        if (ttl > 0) verified.set(token, claims, { ttl });
        return claims;
      } catch (err) {
        if (err instanceof joseErrors.JOSEError || err instanceof TypeError) return null;
        throw err;
      }
    },
  };
}
