/**
 * Fixed-window counters behind an interface, so a shared store (Redis, PostgreSQL) can replace the
 * in-memory one when several replicas must share limits.
 */
export interface RateLimitStore {
  /** Count one hit on `key`; returns the count in the current window and when the window ends. */
  hit(key: string, windowMs: number): Promise<{ count: number; resetAt: number }>;
  /** Take back one hit (an attempt counted in advance that turned out fine). */
  undo(key: string): Promise<void>;
  reset(key: string): Promise<void>;
}

export function createMemoryRateLimitStore(): RateLimitStore {
  const windows = new Map<string, { count: number; resetAt: number }>();
  let lastSweep = Date.now();
  const sweep = (now: number) => {
    if (now - lastSweep < 60_000) return;
    lastSweep = now;
    for (const [key, w] of windows) if (w.resetAt <= now) windows.delete(key);
  };
  const current = (key: string, now: number) => {
    const w = windows.get(key);
    return w && w.resetAt > now ? w : null;
  };
  return {
    async hit(key, windowMs) {
      const now = Date.now();
      sweep(now);
      let w = current(key, now);
      if (!w) {
        w = { count: 0, resetAt: now + windowMs };
        windows.set(key, w);
      }
      w.count++;
      return { ...w };
    },
    async undo(key) {
      const w = current(key, Date.now());
      if (w && w.count > 0) w.count--;
    },
    async reset(key) {
      windows.delete(key);
    },
  };
}

export interface RateLimits {
  windowMs: number;
  /** register + login calls per client IP per window. */
  authPerIp: number;
  /** Failed logins (and registrations) per email per window. */
  failuresPerEmail: number;
}

export class RateLimitedError extends Error {
  override name = 'RateLimitedError';
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}
