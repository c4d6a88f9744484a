import argon2 from 'argon2';

/** OWASP's minimum for argon2id: m=19456 KiB, t=2, p=1. Settings below it are refused. */
export const OWASP_MIN = { memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export interface PasswordHashing {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
  /** How many hashes may run at once; more wait their turn, so logins cannot starve the thread pool. */
  maxConcurrent: number;
  /** How long a hash may wait for its turn before the call is refused as busy (default 3 s). */
  maxWaitMs?: number;
}

export const DEFAULT_MAX_WAIT_MS = 3_000;

/**
 * Too many password checks are queued: the caller should come back in a moment. Without a bound, a
 * burst of logins queued behind argon2 without limit, each client waiting longer than the last.
 */
export class PasswordCheckBusyError extends Error {
  readonly retryAfterSeconds = 2;
  constructor(waitedMs: number) {
    super(`too many password checks are in progress (waited ${waitedMs} ms); try again in a few seconds`);
    this.name = 'PasswordCheckBusyError';
  }
}

export const PASSWORD_MIN_CHARS = 8;
export const PASSWORD_MAX_BYTES = 1024;

/** A small FIFO semaphore whose waiters give up after `maxWaitMs`. */
class Limiter {
  private active = 0;
  private readonly queue: { start: () => void; timer: NodeJS.Timeout }[] = [];
  constructor(
    private readonly max: number,
    private readonly maxWaitMs: number,
  ) {}
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) {
      await new Promise<void>((resolve, reject) => {
        const waiter = {
          start: resolve,
          timer: setTimeout(() => {
            this.queue.splice(this.queue.indexOf(waiter), 1);
            reject(new PasswordCheckBusyError(this.maxWaitMs));
          }, this.maxWaitMs),
        };
        this.queue.push(waiter);
      });
    } else this.active++;
    try {
      return await work();
    } finally {
      const next = this.queue.shift();
      if (next) {
        clearTimeout(next.timer);
        next.start(); // the slot passes on: `active` stays
      } else this.active--;
    }
  }
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(hash: string, password: string): Promise<boolean>;
  /** Spend the same work as a real verification, for a user that does not exist. */
  verifyDummy(password: string): Promise<false>;
}

export function createPasswordHasher(settings: PasswordHashing): PasswordHasher {
  for (const key of ['memoryCost', 'timeCost', 'parallelism'] as const) {
    if (settings[key] < OWASP_MIN[key]) {
      throw new Error(`argon2 ${key} ${settings[key]} is below OWASP's minimum ${OWASP_MIN[key]}`);
    }
  }
  const limiter = new Limiter(Math.max(1, settings.maxConcurrent), settings.maxWaitMs ?? DEFAULT_MAX_WAIT_MS);
  const options = {
    type: argon2.argon2id,
    memoryCost: settings.memoryCost,
    timeCost: settings.timeCost,
    parallelism: settings.parallelism,
  };
  let dummyHash: Promise<string> | undefined;
  const verify = (hash: string, password: string) =>
    limiter.run(() => argon2.verify(hash, password).catch(() => false));
  return {
    hash: (password) => limiter.run(() => argon2.hash(password, options)),
    verify,
    async verifyDummy(password) {
      if (!dummyHash) {
        const computing = limiter.run(() => argon2.hash('dummy password for unknown users', options));
        dummyHash = computing;
        // Refused as busy: the next unknown-user login computes it.
        computing.catch(() => {
          if (dummyHash === computing) dummyHash = undefined;
        });
      }
      await verify(await dummyHash, password);
      return false;
    },
  };
}
