/**
 * LISTEN on a connection of its own that comes back by itself after the database went away.
 * The server's two loops (new deployments for the workers, status changes for watchers) use it.
 */
import { GuardedClient } from './pg';

export interface ListenerOptions {
  url: string;
  /** Channel name → handler of each notification's payload. */
  channels: Record<string, (payload: string) => void>;
  /** After every successful (re)connection: catch up on what was notified while disconnected. */
  onConnected?: () => void;
  /** A connection attempt failed or an established connection was lost; a retry is scheduled. */
  onError?: (err: Error, wasConnected: boolean) => void;
  /** Delay before a new attempt (default 1 s). */
  retryMs?: number;
}

export interface Listener {
  /** Connects once; resolves after that first attempt, whether it succeeded or a retry is scheduled. */
  start(): Promise<void>;
  close(): Promise<void>;
  /** Whether the LISTEN connection is up now. */
  readonly connected: boolean;
}

export function createListener(opts: ListenerOptions): Listener {
  const retryMs = opts.retryMs ?? 1_000;
  let client: GuardedClient | undefined;
  let connected = false;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;

  const schedule = () => {
    if (closed || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      void attempt();
    }, retryMs);
    timer.unref();
  };

  const attempt = async (): Promise<void> => {
    if (closed) return;
    // Listeners first, then connect: pg may emit `error` in the same tick that completes the start-up.
    const c = new GuardedClient({ connectionString: opts.url, keepAlive: true });
    client = c;
    let up = false;
    let gone = false;
    const lost = (err?: Error) => {
      if (gone) return;
      gone = true;
      if (client === c) {
        client = undefined;
        connected = false;
      }
      c.end().catch(() => {});
      if (!closed) opts.onError?.(err ?? new Error('LISTEN connection ended'), up);
      schedule();
    };
    c.on('error', lost);
    c.on('end', () => lost());
    c.on('notification', (msg) => opts.channels[msg.channel]?.(msg.payload ?? ''));
    try {
      await c.connect();
      for (const channel of Object.keys(opts.channels)) {
        await c.query(`LISTEN ${c.escapeIdentifier(channel)}`);
      }
    } catch (err) {
      lost(err as Error);
      return;
    }
    if (gone || closed) {
      if (closed) await c.end().catch(() => {});
      return;
    }
    up = true;
    connected = true;
    opts.onConnected?.();
  };

  return {
    start: attempt,
    async close() {
      closed = true;
      clearTimeout(timer);
      timer = undefined;
      const c = client;
      client = undefined;
      connected = false;
      await c?.end().catch(() => {});
    },
    get connected() {
      return connected;
    },
  };
}
