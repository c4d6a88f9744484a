/**
 * pg with a `Client` that has an `error` listener from construction.
 *
 * An `error` event on an EventEmitter without a listener is an uncaught exception, which kills the
 * server. pg emits `error` when a connection breaks, and it can do so in the same read as the
 * `ReadyForQuery` that completes the start-up: after the connect callback ran but before any code
 * that awaited `connect()` (Sequelize's connection manager, or `await client.connect()` followed by
 * `client.on('error', …)`) had a chance to attach a listener. PostgreSQL restarting (57P01) while a
 * pool reconnects does exactly that (sequelize/sequelize#12704).
 *
 * The listener attached here only marks the client broken (`_invalid`, which Sequelize's pool
 * validation reads, so the connection is discarded); queries in flight are already rejected by pg,
 * and whoever owns the client still sees the error through listeners of its own.
 */
import pg from 'pg';

export class GuardedClient extends pg.Client {
  /** Set once the connection reported an error: never hand this client out again. */
  broken = false;

  constructor(config?: string | pg.ClientConfig) {
    super(config);
    this.on('error', () => {
      this.broken = true;
      // Sequelize's pool validation (`validate()` in its postgres connection manager) reads this flag.
      (this as unknown as { _invalid: boolean })._invalid = true;
    });
  }
}

/**
 * The pg module with `Client` replaced by {@link GuardedClient}: give it to Sequelize as its
 * `dialectModule`. Everything else (types, Pool, escape helpers) is pg's own, through the prototype.
 */
export const guardedPg: typeof pg = Object.create(pg, {
  Client: { value: GuardedClient, enumerable: true },
});

/** A pg.Pool whose clients are {@link GuardedClient}s and whose idle-client errors are reported, not thrown. */
export function guardedPool(config: pg.PoolConfig, onIdleError: (err: Error) => void = () => {}): pg.Pool {
  const pool = new pg.Pool({ ...config, Client: GuardedClient });
  pool.on('error', onIdleError);
  return pool;
}
