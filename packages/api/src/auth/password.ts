import argon2 from 'argon2';

/** OWASP's minimum for argon2id: m=19456 KiB, t=2, p=1. Settings below it are refused. */
export const OWASP_MIN = { memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export interface PasswordHashing {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
  /** How many hashes may run at once; more wait their turn, so logins cannot starve the thread pool. */
  maxConcurrent: number;
}

export const PASSWORD_MIN_CHARS = 8;
export const PASSWORD_MAX_BYTES = 1024;

/** A small FIFO semaphore. */
class Limiter {
  private active = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly max: number) {}
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.active++;
    try {
      return await work();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.active--;
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
  const limiter = new Limiter(Math.max(1, settings.maxConcurrent));
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
      dummyHash ??= limiter.run(() => argon2.hash('dummy password for unknown users', options));
      await verify(await dummyHash, password);
      return false;
    },
  };
}
