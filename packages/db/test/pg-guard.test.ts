/**
 * PostgreSQL shutting down just as a connection completes its start-up: `ReadyForQuery` and a FATAL
 * 57P01 arrive in one read. pg then emits `error` before code that awaited `connect()` can listen
 * (Sequelize's connection manager, sequelize/sequelize#12704): an uncaught exception, which kills a
 * server. Every client the product makes must survive it; the proxy produces it on every connection.
 */
import { type PausableProxy, startPausableProxy } from '@coderunner/db/testing-proxy';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../src/connection';
import { createListener } from '../src/listen';
import { GuardedClient, guardedPool } from '../src/pg';
import { createTestDatabase, type TestDatabase } from '../src/testing';

let db: TestDatabase;
let proxy: PausableProxy;
let proxiedUrl: string;
const uncaught: unknown[] = [];
const onUncaught = (err: unknown) => uncaught.push(err);

beforeAll(async () => {
  db = await createTestDatabase();
  const target = new URL(db.url);
  proxy = await startPausableProxy(Number(target.port || 5432), target.hostname);
  const via = new URL(db.url);
  via.hostname = '127.0.0.1';
  via.port = String(proxy.port);
  proxiedUrl = via.toString();
  process.on('uncaughtException', onUncaught);
});
afterAll(async () => {
  process.off('uncaughtException', onUncaught);
  await proxy?.close();
  await db?.drop();
});

const times = <T>(n: number, fn: (i: number) => Promise<T>) =>
  Array.from({ length: n }, (_, i) => i).reduce<Promise<void>>(
    (p, i) => p.then(() => fn(i).then(() => undefined)),
    Promise.resolve(),
  );

describe('a FATAL error in the same read as the start-up', () => {
  it('the proxy really delivers it in one chunk (a plain pg.Client without a listener would throw)', async () => {
    proxy.poisonStartups(true);
    const before = proxy.poisoned;
    const client = new GuardedClient({ connectionString: proxiedUrl });
    const errors: Error[] = [];
    client.on('error', (err) => errors.push(err));
    await client.connect(); // the start-up itself succeeds...
    await new Promise((r) => setTimeout(r, 50));
    expect((errors[0] as { code?: string } | undefined)?.code).toBe('57P01'); // ...then the FATAL
    expect(client.broken).toBe(true);
    expect(proxy.poisoned).toBe(before + 1);
    await client.end().catch(() => {});
  });

  it("Sequelize's pool: 30 poisoned connections fail their queries, none throws, and it recovers", async () => {
    const sequelize = connect(proxiedUrl, { poolMax: 3, acquireTimeoutMs: 5_000 });
    try {
      proxy.poisonStartups(false);
      await sequelize.query('SELECT 1');
      proxy.poisonStartups(true);
      proxy.cut(); // the pool's connection breaks; the next ones are poisoned
      const before = proxy.poisoned;
      let failed = 0;
      await times(30, async () => {
        await sequelize.query('SELECT 1').catch(() => failed++);
        await new Promise((r) => setTimeout(r, 5));
      });
      expect(proxy.poisoned - before).toBeGreaterThanOrEqual(25);
      expect(failed).toBeGreaterThan(0);
      proxy.poisonStartups(false);
      const [rows] = await sequelize.query('SELECT 1 AS one');
      expect(rows).toEqual([{ one: 1 }]);
    } finally {
      proxy.poisonStartups(false);
      await sequelize.close();
    }
    expect(uncaught).toEqual([]);
  });

  it('a guarded pg.Pool: queries fail, nothing throws', async () => {
    const idle: Error[] = [];
    const pool = guardedPool({ connectionString: proxiedUrl, max: 2 }, (err) => idle.push(err));
    try {
      proxy.poisonStartups(true);
      let failed = 0;
      await times(10, () => pool.query('SELECT 1').catch(() => failed++));
      expect(failed).toBe(10);
      proxy.poisonStartups(false);
      expect((await pool.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
    } finally {
      proxy.poisonStartups(false);
      await pool.end();
    }
    expect(uncaught).toEqual([]);
  });

  it('the LISTEN helper keeps retrying through poisoned start-ups and listens again afterwards', async () => {
    proxy.poisonStartups(true);
    const before = proxy.poisoned;
    const received: string[] = [];
    let connections = 0;
    const listener = createListener({
      url: proxiedUrl,
      channels: { cr_guard_test: (payload) => received.push(payload) },
      onConnected: () => connections++,
      retryMs: 20,
    });
    try {
      await listener.start();
      for (let i = 0; i < 200 && proxy.poisoned - before < 10; i++)
        await new Promise((r) => setTimeout(r, 20));
      expect(proxy.poisoned - before).toBeGreaterThanOrEqual(10);
      proxy.poisonStartups(false);
      for (let i = 0; i < 200 && !listener.connected; i++) await new Promise((r) => setTimeout(r, 20));
      expect(listener.connected).toBe(true);
      const notifier = new GuardedClient({ connectionString: db.url });
      await notifier.connect();
      await notifier.query("SELECT pg_notify('cr_guard_test', 'hello')");
      await notifier.end();
      for (let i = 0; i < 100 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(received).toEqual(['hello']);
    } finally {
      proxy.poisonStartups(false);
      await listener.close();
    }
    expect(uncaught).toEqual([]);
  });
});
