/**
 * What a system log line means, for code: the engine writes each line people read together with a
 * typed event (see `systemEvent` in context.ts), and the CLI, the reconciler and the dashboard read
 * the event, never the wording. A closed set: what code reads today.
 *
 * - `queued`: the deployment is PENDING for a new series of builds (deployed, rolled back, redeployed,
 *   or brought back after a restart); earlier interrupted builds no longer count.
 * - `running`: the app answers at `url`.
 * - `retry`: a build whose worker died is queued again, the `n`th time of at most `of`.
 * - `failed`: the deployment went FAILED; `reason` is what the user reads first (one line, then at
 *   most a few lines of the output that explain it).
 * - `stopped`: the deployment was stopped.
 * - `restart`: the app exited on its own and is started again in its sandbox after `delayMs`, the
 *   `n`th time in the restart window (see restart-policy.ts, where these are counted).
 * - `start`: its owner started it again (`deployments start`); the restart count starts over.
 */
export type LogEvent =
  | { type: 'queued' }
  | { type: 'running'; url: string }
  | { type: 'retry'; n: number; of: number }
  | { type: 'failed'; reason: string }
  | { type: 'stopped' }
  | {
      type: 'restart';
      n: number;
      exitCode: number | null;
      signal: string | null;
      /** The memory limit it was killed at, when it ran out of memory. */
      oomLimitMb: number | null;
      delayMs: number;
    }
  | { type: 'start' };

export type LogEventType = LogEvent['type'];

const TYPES: ReadonlySet<string> = new Set<LogEventType>([
  'queued',
  'running',
  'retry',
  'failed',
  'stopped',
  'restart',
  'start',
]);

/** A stored event as this version knows it, or undefined (absent, or of a kind it does not know). */
export function parseLogEvent(value: unknown): LogEvent | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const e = value as Record<string, unknown>;
  if (typeof e.type !== 'string' || !TYPES.has(e.type)) return undefined;
  switch (e.type) {
    case 'running':
      return typeof e.url === 'string' ? { type: 'running', url: e.url } : undefined;
    case 'retry':
      return typeof e.n === 'number' && typeof e.of === 'number'
        ? { type: 'retry', n: e.n, of: e.of }
        : undefined;
    case 'failed':
      return typeof e.reason === 'string' ? { type: 'failed', reason: e.reason } : undefined;
    case 'restart':
      return typeof e.n === 'number' && typeof e.delayMs === 'number'
        ? {
            type: 'restart',
            n: e.n,
            exitCode: typeof e.exitCode === 'number' ? e.exitCode : null,
            signal: typeof e.signal === 'string' ? e.signal : null,
            oomLimitMb: typeof e.oomLimitMb === 'number' ? e.oomLimitMb : null,
            delayMs: e.delayMs,
          }
        : undefined;
    default:
      return { type: e.type as 'queued' | 'stopped' | 'start' };
  }
}
