/**
 * Mixed load: 100 concurrent users for 60 s against a real server (a child process, so the load
 * generator does not share its event loop) on a fresh database. Users arrive over 10 s and warm up
 * for 5 s more before the measured minute. Each user registers once, logs in
 * again every 10-20 s, creates a few projects (free users meet the 3-project quota: FORBIDDEN is an
 * expected answer; every fourth user is on the team plan), and lists and reads often.
 *
 * Asserts: no 5xx and no unanswered request, no request over 5 s, only the expected 4xx, every
 * acknowledged project stored, and the server's memory after the run (after a full GC in the child,
 * see fixtures/memory-probe.ts) within a margin of the memory after warm-up.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTestDatabase, freePort, type TestDatabase } from '@coderunner/db/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CallResult, LoadRecorder, trpcCall } from './fixtures/http';
import {
  cleanupStack,
  cpuSecondsOf,
  type MemoryProbe,
  mb,
  rssOf,
  type ServerProcess,
  sleep,
  startServerProcess,
} from './fixtures/server-process';

const CLIENTS = 100;
/** Users arrive (register) over this, then all of them run for WARMUP_MS before the measured run. */
const RAMP_MS = 10_000;
const WARMUP_MS = 5_000;
/** 60 s; CODERUNNER_LOAD_DURATION_S overrides it for local experiments. */
const DURATION_MS = Number(process.env.CODERUNNER_LOAD_DURATION_S || 60) * 1000;
const SLOW_MS = 5_000;
const SETTLE_MS = 5_000;
/** The server's RSS after the run (after GC) may exceed the one after warm-up by at most this. */
const RSS_MARGIN = 100 * 1024 * 1024;
const PASSWORD = 'a load test passphrase';

const cleanup = cleanupStack();
let db: TestDatabase;
let sql: pg.Client;
let server: ServerProcess;
let rssAtStart = 0;

interface User {
  email: string;
  token: string;
  team: boolean;
  projects: string[];
  created: number;
  nextLoginAt: number;
}

beforeAll(async () => {
  db = await createTestDatabase('cr_load');
  cleanup.add('drop database', () => db.drop());
  sql = new pg.Client({ connectionString: db.url });
  sql.on('error', () => {});
  await sql.connect();
  cleanup.add('close sql', () => sql.end());
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-load-'));
  cleanup.add('remove data dir', () => fs.rmSync(dataDir, { recursive: true, force: true }));
  server = await startServerProcess({
    port: await freePort(),
    env: {
      DATABASE_URL: db.url,
      CODERUNNER_DATA_DIR: dataDir,
      CODERUNNER_AUTH_SECRET: 'mixed-load-test-secret-mixed-load-test-secret',
      CODERUNNER_RATE_LIMIT_AUTH_PER_IP: '1000000',
      CODERUNNER_RATE_LIMIT_LOGIN_FAILURES: '1000000',
    },
  });
  cleanup.add('stop server', () => server.stop());
  rssAtStart = rssOf(server.pid);
}, 120_000);

afterAll(() => cleanup.run(), 60_000);

const rand = (n: number) => Math.floor(Math.random() * n);

async function registerUser(i: number, rec: LoadRecorder): Promise<User> {
  const email = `load-${i}-${randomBytes(4).toString('hex')}@example.com`;
  // A busy password queue answers 503 with "try again in a few seconds" (the login queue is bounded
  // on purpose): the client does as told, as the CLI's user would, and only its last answer counts.
  let answer = await trpcCall(server.trpc, 'mutation', 'auth.register', { email, password: PASSWORD });
  for (let retry = 0; answer.status === 503 && answer.code === 'SERVICE_UNAVAILABLE' && retry < 5; retry++) {
    await sleep(1_000 + rand(1_000));
    answer = await trpcCall(server.trpc, 'mutation', 'auth.register', { email, password: PASSWORD });
  }
  const r = rec.record('auth.register', answer);
  if (r.status !== 200) throw new Error(`register failed: ${r.status} ${r.code} ${r.message ?? r.failure}`);
  const team = i % 4 === 0;
  if (team) await sql.query(`UPDATE users SET plan_type = 'team' WHERE email = $1`, [email]);
  return {
    email,
    token: r.data.token,
    team,
    projects: [],
    created: 0,
    nextLoginAt: 0,
  };
}

/** One user's session until `until`: what a person (or the CLI) does, without waiting between calls. */
async function session(u: User, until: number, rec: LoadRecorder, unexpected: CallResult[]) {
  // Spread the logins over the phase (a pause between phases must not line them all up at its end;
  // nobody logs in again right after registering).
  u.nextLoginAt = Date.now() + 2_000 + rand(15_000);
  const expect4xx = (op: string, r: CallResult, ok: (r: CallResult) => boolean) => {
    rec.record(op, r);
    if (r.status >= 400 && r.status < 500 && !ok(r) && unexpected.length < 50) unexpected.push(r);
  };
  while (Date.now() < until) {
    const opts = { token: u.token, timeoutMs: 15_000 };
    if (Date.now() >= u.nextLoginAt) {
      u.nextLoginAt = Date.now() + 10_000 + rand(10_000);
      const r = await trpcCall(server.trpc, 'mutation', 'auth.login', { email: u.email, password: PASSWORD });
      expect4xx('auth.login', r, () => false);
      if (r.status === 200) u.token = r.data.token;
      continue;
    }
    const dice = Math.random();
    if (dice < 0.08) {
      const r = await trpcCall(
        server.trpc,
        'mutation',
        'projects.create',
        { name: `p-${u.created + 1}-${randomBytes(3).toString('hex')}`, description: 'load' },
        opts,
      );
      // Free users meet their quota: FORBIDDEN is the answer they should get.
      expect4xx('projects.create', r, (x) => x.status === 403 && x.code === 'FORBIDDEN' && !u.team);
      if (r.status === 200) {
        u.created++;
        u.projects.push(r.data.id);
      }
    } else if (dice < 0.55) {
      expect4xx(
        'projects.list',
        await trpcCall(server.trpc, 'query', 'projects.list', { limit: 20 }, opts),
        () => false,
      );
    } else if (dice < 0.9 && u.projects.length) {
      const id = u.projects[rand(u.projects.length)]!;
      const r = await trpcCall(server.trpc, 'query', 'projects.get', { id }, opts);
      expect4xx('projects.get', r, () => false);
    } else {
      expect4xx('auth.me', await trpcCall(server.trpc, 'query', 'auth.me', undefined, opts), () => false);
    }
    await sleep(rand(20));
  }
}

describe(`mixed load: ${CLIENTS} users for ${DURATION_MS / 1000} s`, () => {
  it('no 5xx, nothing over 5 s, only expected 4xx, acknowledged writes stored, memory back within a margin', async () => {
    // Warm-up: users arrive over RAMP_MS (argon2 at its production cost for each registration) and
    // start their sessions at once; all run until the end of the warm-up.
    const warm = new LoadRecorder(SLOW_MS);
    const warmUnexpected: CallResult[] = [];
    const warmStart = performance.now();
    const warmUntil = Date.now() + RAMP_MS + WARMUP_MS;
    const users = await Promise.all(
      Array.from({ length: CLIENTS }, async (_, i) => {
        await sleep((i * RAMP_MS) / CLIENTS);
        const u = await registerUser(i, warm);
        await session(u, warmUntil, warm, warmUnexpected);
        return u;
      }),
    );
    console.log(
      `[mixed-load] warm-up (${CLIENTS} users arriving over ${RAMP_MS / 1000} s, then ${WARMUP_MS / 1000} s of traffic):\n` +
        warm.summary((performance.now() - warmStart) / 1000),
    );
    await sleep(SETTLE_MS);
    const before: MemoryProbe = await server.memory();
    const rssProcBefore = rssOf(server.pid);

    const rec = new LoadRecorder(SLOW_MS, Date.now());
    const unexpected: CallResult[] = [];
    const started = performance.now();
    const cpuBefore = cpuSecondsOf(server.pid);
    const until = Date.now() + DURATION_MS;
    await Promise.all(users.map((u) => session(u, until, rec, unexpected)));
    const seconds = (performance.now() - started) / 1000;
    const rssPeak = rssOf(server.pid);
    const serverCpu = (cpuSecondsOf(server.pid) - cpuBefore) / seconds;
    const during = await server.memory(); // also reads the event-loop delay of the run

    await sleep(SETTLE_MS);
    const after = await server.memory();
    const rssProcAfter = rssOf(server.pid);
    console.log(
      `[mixed-load] measured run:\n${rec.summary(seconds)}\n` +
        `[mixed-load] server CPU during the run: ${serverCpu.toFixed(2)} cores (main thread + libuv pool); ` +
        `RSS right after start ${mb(rssAtStart)}\n` +
        `[mixed-load] server memory (after full GC): before ${mb(before.rss)} rss / ${mb(before.heapUsed)} heap, ` +
        `at the end of the load ${mb(rssPeak)} rss (/proc, no GC), after ${SETTLE_MS / 1000} s settle ` +
        `${mb(after.rss)} rss / ${mb(after.heapUsed)} heap (/proc VmRSS ${mb(rssProcBefore)} → ${mb(rssProcAfter)}); ` +
        `event-loop delay during the run p99 ${during.loopDelayP99Ms.toFixed(0)} ms, max ${during.loopDelayMaxMs.toFixed(0)} ms; ` +
        `server log lines ${server.lineCount()}, error lines ${server.errorLines().length}`,
    );
    if (rec.samples.length) console.log('[mixed-load] bad samples', JSON.stringify(rec.samples.slice(0, 10)));

    expect(server.exited(), 'the server died under load').toBe(false);
    for (const r of [warm, rec]) {
      expect(r.count5xx(), `5xx or unanswered: ${JSON.stringify(r.samples.slice(0, 5))}`).toBe(0);
      expect(r.slow, `requests over ${SLOW_MS} ms: ${JSON.stringify(r.samples.slice(0, 5))}`).toBe(0);
    }
    expect([...warmUnexpected, ...unexpected], 'unexpected 4xx').toEqual([]);
    expect(server.errorLines(), 'error lines in the server log').toEqual([]);
    expect(rec.count).toBeGreaterThan(CLIENTS * 10); // the load really ran

    // Every acknowledged project is stored, owned by its user; free users stayed within quota.
    const { rows } = await sql.query<{ email: string; n: number }>(
      'SELECT u.email, count(p.id)::int AS n FROM users u LEFT JOIN projects p ON p.user_id = u.id GROUP BY u.email',
    );
    const stored = new Map(rows.map((r) => [r.email, r.n]));
    for (const u of users) {
      expect(stored.get(u.email), u.email).toBe(u.created);
      if (!u.team) expect(u.created).toBeLessThanOrEqual(3);
    }

    expect(after.gc, 'the memory probe could not force a GC').toBe(true);
    expect(after.rss - before.rss, `RSS ${mb(before.rss)} → ${mb(after.rss)}`).toBeLessThan(RSS_MARGIN);
    expect(after.rss, `RSS ${mb(before.rss)} → ${mb(after.rss)}`).toBeLessThan(before.rss * 1.5);
    expect(after.heapUsed, `heap ${mb(before.heapUsed)} → ${mb(after.heapUsed)}`).toBeLessThan(
      before.heapUsed * 1.5,
    );
  }, 240_000);
});
