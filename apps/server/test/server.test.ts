import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createClient } from '@coderunner/api/client';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '@coderunner/db';
import { createTestDatabase, freePort, type TestDatabase } from '@coderunner/db/testing';
import { startPausableProxy } from '@coderunner/db/testing-proxy';
import { detectIsolation } from '@coderunner/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/logger';
import { type RunningServer, startServer } from '../src/server';

const silent = createLogger('silent');

describe('server on a real database', () => {
  let db: TestDatabase;
  let server: RunningServer;
  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startServer(loadConfig({ DATABASE_URL: db.url, PORT: '0', LOG_LEVEL: 'silent' }), silent);
  });
  afterAll(async () => {
    await server?.close();
    await db?.drop();
  });

  it('GET /healthz answers 200', async () => {
    const res = await fetch(`${server.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('GET /readyz answers 200 when the database answers', async () => {
    const res = await fetch(`${server.url}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      status: 'ready',
      database: 'ok',
      isolation: detectIsolation('auto').mode,
    });
  });

  it('applied the migrations at start', async () => {
    const [rows] = await server.deps.sequelize.query('SELECT name FROM "SequelizeMeta"');
    expect(rows).toEqual([{ name: '0001_initial_schema' }]);
  });

  it('answers the tRPC health query through the typed client (superjson dates)', async () => {
    const client = createClient({ url: `${server.url}/trpc` });
    const health = await client.health.query();
    expect(health.status).toBe('ok');
    expect(health.database).toBe(true);
    expect(health.time).toBeInstanceOf(Date);
  });

  it('answers unknown procedures with NOT_FOUND and no stack trace', async () => {
    const res = await fetch(`${server.url}/trpc/nope.nothing`);
    expect(res.status).toBe(404);
    const text = await res.text();
    expect(text).toContain('NOT_FOUND');
    expect(text).not.toMatch(/stack|at .*\.ts:\d+/);
  });
});

describe('readiness follows the database', () => {
  let dataDir: string;
  let pgPort: number;
  let cluster: EmbeddedPostgres;
  let server: RunningServer;
  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-readyz-'));
    pgPort = await freePort();
    cluster = await startEmbeddedPostgres({ dataDir, port: pgPort });
    server = await startServer(
      loadConfig({ DATABASE_URL: cluster.url(), PORT: '0', LOG_LEVEL: 'silent' }),
      silent,
    );
  });
  afterAll(async () => {
    await server?.close();
    await cluster?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('503 with the reason while the database is down, 200 again when it is back, without a restart', async () => {
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    await cluster.stop();
    const started = Date.now();
    const down = await fetch(`${server.url}/readyz`);
    expect(down.status).toBe(503);
    expect(await down.json()).toEqual({
      status: 'unavailable',
      reason: expect.stringMatching(/database unreachable/),
    });
    expect(Date.now() - started).toBeLessThan(3_000);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200); // alive, just not ready

    cluster = await startEmbeddedPostgres({ dataDir, port: pgPort });
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      status = (await fetch(`${server.url}/readyz`)).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
  });
});

describe('graceful shutdown', () => {
  it('finishes a request in flight before closing the pool, then refuses new connections', async () => {
    const db = await createTestDatabase();
    const pgUrl = new URL(db.url);
    const proxy = await startPausableProxy(Number(pgUrl.port || 5432), pgUrl.hostname);
    pgUrl.port = String(proxy.port);
    const server = await startServer(
      loadConfig({ DATABASE_URL: pgUrl.toString(), PORT: '0', LOG_LEVEL: 'silent' }),
      silent,
    );
    try {
      // Stall the database so that a readiness check is in flight when shutdown begins.
      proxy.pause();
      const inFlight = fetch(`${server.url}/readyz`);
      await new Promise((r) => setTimeout(r, 200));
      let closed = false;
      const closing = server.close().then(() => {
        closed = true;
      });
      await new Promise((r) => setTimeout(r, 300));
      expect(closed).toBe(false); // still draining
      await expect(fetch(`${server.url}/healthz`)).rejects.toThrow(); // no longer accepting
      proxy.resume();
      const res = await inFlight;
      expect(res.status).toBe(200); // the in-flight request got its whole answer
      await closing;
      expect(closed).toBe(true);
    } finally {
      proxy.resume();
      await server.close();
      await proxy.close();
      await db.drop();
    }
  });
});

describe('configuration', () => {
  it('defaults', () => {
    const config = loadConfig({});
    expect(config.PORT).toBe(8080);
    expect(config.HOST).toBe('127.0.0.1');
    expect(config.dataDir).toMatch(/\.data$/);
  });

  it('names every bad variable with a reason', () => {
    expect(() => loadConfig({ PORT: 'eighty', DATABASE_URL: 'mysql://x', LOG_LEVEL: 'loud' })).toThrow(
      /PORT: PORT must be a port number[\s\S]*DATABASE_URL: DATABASE_URL must start with postgres:\/\/[\s\S]*LOG_LEVEL/,
    );
  });

  it("refuses HOST on the apps' own address (apps there would share the dashboard's cookies)", () => {
    for (const HOST of ['127.77.0.1', '::ffff:127.77.0.1'])
      expect(() => loadConfig({ HOST })).toThrow(
        /HOST: HOST must not be 127\.77\.0\.1: that address is reserved for apps/,
      );
    expect(loadConfig({ HOST: '0.0.0.0' }).HOST).toBe('0.0.0.0');
  });

  it('refuses to start on a busy port with a clear message', async () => {
    const db = await createTestDatabase();
    const blocker = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      await expect(
        startServer(loadConfig({ DATABASE_URL: db.url, PORT: String(port), LOG_LEVEL: 'silent' }), silent),
      ).rejects.toThrow(`port ${port} on 127.0.0.1 is already in use`);
    } finally {
      blocker.close();
      await db.drop();
    }
  });
});
