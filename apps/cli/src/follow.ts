/**
 * Following the server's Server-Sent-Event subscriptions (deployments.logs, deployments.watch) to
 * their end, the way a command needs it:
 *
 * - a server that cannot be reached at the start is an error at once (exit 4), never a silent wait;
 * - a connection lost midway: a persistent stream (a follow) waits for the server to come back and
 *   resumes after the last event it got (the `eventsource` client reconnects sending Last-Event-ID,
 *   which the server turns into `lastEventId`; if the event source gives up, the stream subscribes
 *   again itself with `lastEventId`), so no line is lost; lines it already has are dropped, so none
 *   is printed twice. A history-only stream fails instead of hanging;
 * - an AbortSignal (Ctrl-C) ends it quietly.
 */
import type { CodeRunnerClient } from '@coderunner/api/client';
import { CliError, ExitCode, trpcCode } from './errors';
import type { Deployment, LogBatch, LogEnd, LogLine } from './views';

interface Callbacks<T> {
  onStarted: () => void;
  onData: (data: T) => void;
  onError: (err: unknown) => void;
  onComplete: () => void;
  onConnectionStateChange: (state: { state: string; error: unknown }) => void;
}

interface Unsubscribable {
  unsubscribe(): void;
}

type Starter<T> = (lastEventId: string | null, callbacks: Callbacks<T>) => Unsubscribable;

export interface StreamOptions<T> {
  signal?: AbortSignal | undefined;
  /** Keep going (and resume) when the connection is lost; otherwise that is an error. */
  persistent: boolean;
  onData: (data: T) => void;
  /** The resume position after `data` (tracked events), or null. */
  eventId?: (data: T) => string | null;
  /** The connection was lost ('lost') or is back ('back'): for a note to the person watching. */
  onConnection?: (state: 'lost' | 'back') => void;
  /** The base URL, for "cannot reach ...". */
  apiUrl: string;
  /** Wait before subscribing again when the event source gave up on a lost connection. */
  retryMs?: number;
}

const RESUBSCRIBE_MS = 2_000;

function describe(err: unknown): string {
  const e = err as { message?: unknown; cause?: { message?: unknown } } | undefined;
  const inner = e?.cause?.message ?? e?.message;
  return typeof inner === 'string' && inner ? inner : 'connection failed';
}

function unreachable(apiUrl: string, err: unknown): CliError {
  return new CliError(
    `cannot reach ${apiUrl} — is the server running? (${describe(err)})`,
    ExitCode.unreachable,
    { cause: err },
  );
}

/** Run one subscription until the server ends it, the signal aborts, or it fails. */
export function runStream<T>(start: Starter<T>, opts: StreamOptions<T>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let sub: Unsubscribable | undefined;
    let connected = false;
    let lost = false;
    let settled = false;
    let lastEventId: string | null = null;
    let retry: NodeJS.Timeout | undefined;
    // The event source waits between reconnections on an unref'd timer: without a handle of our
    // own, Node would end the process (exit 13, an unsettled await) while the server restarts.
    const keepAlive = setInterval(() => {}, 60_000);

    const finish = (err?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(retry);
      clearInterval(keepAlive);
      opts.signal?.removeEventListener('abort', onAbort);
      const current = sub;
      sub = undefined;
      current?.unsubscribe();
      if (err === undefined) resolve();
      else reject(err);
    };
    const onAbort = () => finish();

    const markLost = () => {
      if (lost) return;
      lost = true;
      opts.onConnection?.('lost');
    };

    const attempt = () => {
      if (settled) return;
      // Each attempt has its own callbacks: a stale subscription's late events are ignored.
      const mine = {} as { active: boolean };
      mine.active = true;
      const guard =
        <A extends unknown[]>(fn: (...args: A) => void) =>
        (...args: A) => {
          if (mine.active && !settled) fn(...args);
        };
      const resubscribe = () => {
        mine.active = false;
        const current = sub;
        sub = undefined;
        current?.unsubscribe();
        markLost();
        retry = setTimeout(attempt, opts.retryMs ?? RESUBSCRIBE_MS);
      };
      sub = start(lastEventId, {
        onStarted: guard(() => {
          connected = true;
          if (lost) {
            lost = false;
            opts.onConnection?.('back');
          }
        }),
        onData: guard((data: T) => {
          const id = opts.eventId?.(data);
          if (id) lastEventId = id;
          opts.onData(data);
        }),
        onConnectionStateChange: guard((state) => {
          if (state.state !== 'connecting' || !state.error) return;
          // The event source retries by itself; we decide whether waiting makes sense.
          if (!connected || !opts.persistent) finish(unreachable(opts.apiUrl, state.error));
          else markLost();
        }),
        onError: guard((err: unknown) => {
          // An answer from the server (NOT_FOUND, UNAUTHORIZED, ...) is final; a failed connection
          // in a follow is retried from the last event.
          if (trpcCode(err) === undefined && connected && opts.persistent) resubscribe();
          else if (trpcCode(err) === undefined && !connected) finish(unreachable(opts.apiUrl, err));
          else finish(err);
        }),
        onComplete: guard(() => finish()),
      });
    };

    if (opts.signal?.aborted) return finish();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    attempt();
  });
}

export interface LogStreamOptions {
  id: string;
  follow: boolean;
  tail?: number | undefined;
  /** Resume after this line id (lines up to it are not sent again). */
  afterId?: number | null | undefined;
  signal?: AbortSignal | undefined;
  onLine: (line: LogLine) => void;
  /** The server could not send `count` lines before the next one (too old to keep, or we read too slowly). */
  onMissed?: (count: number) => void;
  onConnection?: (state: 'lost' | 'back') => void;
  /** A follow's end: the deployment will write no more (the stream then completes). */
  onEnd?: (end: LogEnd) => void;
  apiUrl: string;
  retryMs?: number;
}

/**
 * A deployment's log lines, each once and in order: the history (the last `tail` lines with it),
 * then with `follow` the new ones until the signal aborts. The server sends them in batches (one
 * event per batch, its id the batch's last line id); they are handed on line by line. A follow
 * resolves when the signal aborts or when the server ends it (the deployment writes no more:
 * `onEnd` says why). Resolves with the last line id seen.
 */
export async function streamLogs(client: CodeRunnerClient, opts: LogStreamOptions): Promise<number | null> {
  let last = opts.afterId ?? null;
  await runStream<{ id: string; data: LogBatch }>(
    (lastEventId, callbacks) => {
      const resumeFrom = lastEventId ?? (last !== null ? String(last) : null);
      return client.deployments.logs.subscribe(
        {
          id: opts.id,
          ...(opts.follow ? { follow: true } : {}),
          ...(opts.tail && resumeFrom === null ? { tail: opts.tail } : {}),
          ...(resumeFrom !== null ? { lastEventId: resumeFrom } : {}),
        },
        callbacks,
      );
    },
    {
      signal: opts.signal,
      persistent: opts.follow,
      apiUrl: opts.apiUrl,
      retryMs: opts.retryMs,
      onConnection: opts.onConnection,
      eventId: (event) => event.id,
      onData: (event) => {
        const { lines, missed, end } = event.data;
        if (missed) opts.onMissed?.(missed);
        for (const line of lines) {
          if (last !== null && line.id <= last) continue; // already printed (a replay after a reconnect)
          last = line.id;
          opts.onLine(line);
        }
        if (end) opts.onEnd?.(end);
      },
    },
  );
  return last;
}

export interface WatchOptions {
  id: string;
  signal?: AbortSignal | undefined;
  onStatus: (deployment: Deployment) => void;
  onConnection?: (state: 'lost' | 'back') => void;
  apiUrl: string;
}

/** A deployment's status: the current one, then each change, until the signal aborts (or DESTROYED). */
export function watchDeployment(client: CodeRunnerClient, opts: WatchOptions): Promise<void> {
  return runStream<Deployment>(
    (_lastEventId, callbacks) => client.deployments.watch.subscribe({ id: opts.id }, callbacks),
    {
      signal: opts.signal,
      persistent: true,
      apiUrl: opts.apiUrl,
      onConnection: opts.onConnection,
      onData: opts.onStatus,
    },
  );
}

/**
 * Calls `onInterrupt` on the first Ctrl-C (SIGINT) instead of dying at once, so the command can end
 * its streams and give the terminal back tidy; returns the function that removes the handler.
 */
export function handleInterrupt(onInterrupt: () => void): () => void {
  const handler = () => onInterrupt();
  process.once('SIGINT', handler);
  return () => process.off('SIGINT', handler);
}
