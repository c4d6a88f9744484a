import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_MAX_WAIT_MS, OWASP_MIN, type PasswordHashing } from './auth/password';
import { readOrCreateSecretFile } from './auth/secret-file';
import type { RateLimits } from './rate-limit';

export interface ApiConfig {
  /** From CODERUNNER_AUTH_SECRET; null: use the one kept in the data folder (see authSecretFromDataDir). */
  authSecret: Uint8Array | null;
  tokenTtlSeconds: number;
  passwordHashing: PasswordHashing;
  rateLimits: RateLimits;
}

const int = (min: number) => z.coerce.number().int().min(min);

const schema = z.object({
  CODERUNNER_AUTH_SECRET: z
    .string()
    .min(32, 'CODERUNNER_AUTH_SECRET must be at least 32 characters')
    .optional(),
  CODERUNNER_TOKEN_TTL_S: int(60).default(7 * 24 * 3600),
  ARGON2_MEMORY_KIB: int(OWASP_MIN.memoryCost).default(OWASP_MIN.memoryCost),
  ARGON2_TIME_COST: int(OWASP_MIN.timeCost).default(OWASP_MIN.timeCost),
  ARGON2_PARALLELISM: int(OWASP_MIN.parallelism).default(OWASP_MIN.parallelism),
  /** Default: half the cores (at least 1), so hashing never takes every core from request handling. */
  ARGON2_MAX_CONCURRENT: int(1).default(Math.max(1, Math.floor(os.availableParallelism() / 2))),
  /** A login waiting longer than this for a free hashing slot is answered 503 with Retry-After. */
  ARGON2_MAX_WAIT_MS: int(100).default(DEFAULT_MAX_WAIT_MS),
  CODERUNNER_RATE_LIMIT_WINDOW_S: int(1).default(15 * 60),
  CODERUNNER_RATE_LIMIT_AUTH_PER_IP: int(1).default(100),
  CODERUNNER_RATE_LIMIT_LOGIN_FAILURES: int(1).default(10),
});

/** Every environment variable the API reads. */
export const API_CONFIG_VARIABLES = Object.keys(schema.shape);

/** The token signing secret generated once and kept in `<dataDir>/auth-secret` (mode 0600). */
export function authSecretFromDataDir(dataDir: string): Uint8Array {
  return new TextEncoder().encode(readOrCreateSecretFile(path.join(dataDir, 'auth-secret')));
}

/** The API's settings from the environment (validated; touches no file). */
export function apiConfigFromEnv(env: NodeJS.ProcessEnv): ApiConfig {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ''));
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    throw new Error(
      `invalid configuration:\n${parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n')}`,
    );
  }
  const e = parsed.data;
  return {
    authSecret: e.CODERUNNER_AUTH_SECRET ? new TextEncoder().encode(e.CODERUNNER_AUTH_SECRET) : null,
    tokenTtlSeconds: e.CODERUNNER_TOKEN_TTL_S,
    passwordHashing: {
      memoryCost: e.ARGON2_MEMORY_KIB,
      timeCost: e.ARGON2_TIME_COST,
      parallelism: e.ARGON2_PARALLELISM,
      maxConcurrent: e.ARGON2_MAX_CONCURRENT,
      maxWaitMs: e.ARGON2_MAX_WAIT_MS,
    },
    rateLimits: {
      windowMs: e.CODERUNNER_RATE_LIMIT_WINDOW_S * 1000,
      authPerIp: e.CODERUNNER_RATE_LIMIT_AUTH_PER_IP,
      failuresPerEmail: e.CODERUNNER_RATE_LIMIT_LOGIN_FAILURES,
    },
  };
}
