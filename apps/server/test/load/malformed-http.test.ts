/**
 * Malformed and hostile HTTP against a server child process: invalid JSON, wrong content types,
 * 100 MB bodies (streamed, with and without a declared length, on the JSON routes and on the upload
 * route), a batch of 1,000 calls, unknown procedures, a 100 KB token. Each must be answered with a
 * 4xx quickly (< 2 s), and the server must be unaffected afterwards: a normal call works and its
 * memory (after a full GC) is back near where it was.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createTestDatabase, freePort, type TestDatabase } from '@coderunner/db/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trpcCall } from './fixtures/http';
import {
  cleanupStack,
  type MemoryProbe,
  mb,
  rssOf,
  type ServerProcess,
  startServerProcess,
} from './fixtures/server-process';

const QUICK_MS = 2_000;
const HUNDRED_MB = 100 * 1024 * 1024;

const cleanup = cleanupStack();
let db: TestDatabase;
let server: ServerProcess;
let token: string;
let baseline: MemoryProbe;

beforeAll(async () => {
  db = await createTestDatabase('cr_malformed');
  cleanup.add('drop database', () => db.drop());
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-malformed-'));
  cleanup.add('remove data dir', () => fs.rmSync(dataDir, { recursive: true, force: true }));
  server = await startServerProcess({
    port: await freePort(),
    env: {
      DATABASE_URL: db.url,
      CODERUNNER_DATA_DIR: dataDir,
      CODERUNNER_AUTH_SECRET: 'malformed-http-secret-malformed-http-secret',
      // Every client here is 127.0.0.1: room for the batch of logins below and the normal calls.
      CODERUNNER_RATE_LIMIT_AUTH_PER_IP: '1000',
    },
  });
  cleanup.add('stop server', () => server.stop());
  const reg = await trpcCall(server.trpc, 'mutation', 'auth.register', {
    email: 'malformed@example.com',
    password: 'malformed passphrase',
  });
  expect(reg.status, reg.message).toBe(200);
  token = reg.data.token;
  // Warm the paths used below, then take the memory baseline.
  for (let i = 0; i < 20; i++) await trpcCall(server.trpc, 'query', 'projects.list', undefined, { token });
  baseline = await server.memory();
}, 120_000);

afterAll(() => cleanup.run(), 60_000);

interface Answer {
  status: number;
  /** Until the response headers arrived. */
  ms: number;
  body: string;
  /** Body bytes the client had written when the answer came. */
  sent: number;
  failure?: string;
}

/**
 * One request over a raw socket. `stream` writes that many body bytes in 64 KiB chunks (with a
 * Content-Length when `declare` is set, chunked otherwise), stopping as soon as an answer arrives.
 * A raw socket, because a server that answers early and then closes makes Node's http client report
 * EPIPE instead of the answer (curl, like this, reads the answer while it sends).
 */
function send(opts: {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  stream?: { bytes: number; declare: boolean };
  timeoutMs?: number;
}): Promise<Answer> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = net.connect(server.port, '127.0.0.1');
    let sent = 0;
    let received = Buffer.alloc(0);
    let headAt: number | undefined;
    let failure: string | undefined;
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const text = received.toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      const cut = text.indexOf('\r\n\r\n');
      resolve({
        status,
        ms: headAt ?? performance.now() - started,
        body: cut === -1 ? '' : Buffer.from(text.slice(cut + 4), 'latin1').toString('utf8'),
        sent,
        ...(status ? {} : { failure: failure ?? 'closed without an answer' }),
      });
    };
    const timer = setTimeout(() => {
      failure ??= 'timeout';
      finish();
    }, opts.timeoutMs ?? 15_000);
    /** The answer is complete (by its Content-Length or its last chunk): no need to wait for a close. */
    const complete = () => {
      const text = received.toString('latin1');
      const cut = text.indexOf('\r\n\r\n');
      if (cut === -1) return false;
      const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, cut))?.[1];
      if (length !== undefined) return received.length - (cut + 4) >= Number(length);
      return /\r\ntransfer-encoding: *chunked/i.test(text.slice(0, cut)) && text.endsWith('\r\n0\r\n\r\n');
    };
    socket.on('data', (d: Buffer) => {
      received = Buffer.concat([received, d]);
      if (headAt === undefined && received.includes('\r\n\r\n')) {
        headAt = performance.now() - started;
        setTimeout(finish, 2_000); // a body that never completes
      }
      if (complete()) finish();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      failure ??= err.code ?? err.message;
    });
    socket.on('close', finish);
    socket.on('connect', () => {
      // Keep-alive, as browsers, fetch and curl do: with `Connection: close` Node's server closes the
      // socket right after answering, and unread upload bytes turn that close into a reset.
      const headers: Record<string, string> = { host: `127.0.0.1:${server.port}`, ...opts.headers };
      if (opts.stream) {
        if (opts.stream.declare) headers['content-length'] = String(opts.stream.bytes);
        else headers['transfer-encoding'] = 'chunked';
      } else if (opts.body !== undefined) {
        headers['content-length'] = String(Buffer.byteLength(opts.body));
      }
      const head = `${opts.method ?? 'POST'} ${opts.path} HTTP/1.1\r\n${Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('')}\r\n`;
      socket.write(head);
      if (!opts.stream) {
        if (opts.body !== undefined) {
          sent = Buffer.byteLength(opts.body);
          socket.write(opts.body);
        }
        return;
      }
      const { bytes, declare } = opts.stream;
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const framed = declare
        ? chunk
        : Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
      const pump = () => {
        while (headAt === undefined && !socket.destroyed && sent < bytes) {
          sent += chunk.length;
          if (!socket.write(framed)) return void socket.once('drain', pump);
        }
        if (sent >= bytes && !declare && !socket.destroyed) socket.write('0\r\n\r\n');
      };
      pump();
    });
  });
}

const json = { 'content-type': 'application/json' };
const auth = () => ({ authorization: `Bearer ${token}` });
const results: { what: string; a: Answer }[] = [];

function expectQuick4xx(what: string, a: Answer, record = true) {
  if (record) results.push({ what, a });
  expect(a.status, `${what}: ${a.failure ?? a.body.slice(0, 300)}`).toBeGreaterThanOrEqual(400);
  expect(a.status, `${what}: ${a.body.slice(0, 300)}`).toBeLessThan(500);
  expect(a.ms, `${what}: answered in ${a.ms.toFixed(0)} ms`).toBeLessThan(QUICK_MS);
  expect(a.body, `${what}: no stack trace`).not.toMatch(/\.ts:\d+|\bat [\w.<>]+ \(|node:internal/);
}

describe('malformed HTTP is refused quickly and leaves the server unaffected', () => {
  it('invalid JSON bodies', async () => {
    for (const body of [
      '{"json": {',
      'not json at all',
      '',
      '{"json":{"email":"a@b.co","password":"x"}}}}',
      '\u0000\u0001',
    ]) {
      expectQuick4xx(
        `invalid JSON ${JSON.stringify(body.slice(0, 20))}`,
        await send({ path: '/trpc/auth.login', headers: json, body }),
      );
    }
    // Well-formed JSON of the wrong shape.
    for (const body of ['[]', '5', 'null', '{"json":"x"}', '{"json":{"email":["a"],"password":{}}}']) {
      expectQuick4xx(`wrong shape ${body}`, await send({ path: '/trpc/auth.login', headers: json, body }));
    }
    // A superjson envelope whose meta points into the prototype chain.
    expectQuick4xx(
      'superjson meta on __proto__',
      await send({
        path: '/trpc/auth.login',
        headers: json,
        body: JSON.stringify({
          json: { email: 'a@b.co', password: 'x' },
          meta: { values: { '__proto__.polluted': ['Date'] } },
        }),
      }),
    );
  });

  it('wrong content types', async () => {
    const body = JSON.stringify({ json: { email: 'a@b.co', password: 'some password' } });
    for (const type of [
      'text/plain',
      'application/xml',
      'application/x-www-form-urlencoded',
      'image/png',
      'multipart/form-data; boundary=x',
    ]) {
      expectQuick4xx(
        `content-type ${type}`,
        await send({ path: '/trpc/auth.login', headers: { 'content-type': type }, body }),
      );
    }
    expectQuick4xx('no content type', await send({ path: '/trpc/auth.login', body }));
    // JSON where the upload route wants multipart.
    expectQuick4xx(
      'JSON to deployments.create',
      await send({ path: '/trpc/deployments.create', headers: { ...json, ...auth() }, body: '{"json":{}}' }),
    );
  });

  const uploadHeaders = (withToken: boolean): Record<string, string> => ({
    'content-type': 'multipart/form-data; boundary=x',
    ...(withToken ? auth() : {}),
  });
  const hundredMb: {
    what: string;
    path: string;
    headers: () => Record<string, string>;
    declare: boolean;
    status: number;
  }[] = [
    {
      what: 'JSON route, declared 100 MB',
      path: '/trpc/auth.login',
      headers: () => json,
      declare: true,
      status: 413,
    },
    {
      what: 'JSON route, chunked 100 MB',
      path: '/trpc/auth.login',
      headers: () => json,
      declare: false,
      status: 413,
    },
    {
      what: 'upload route, declared 100 MB',
      path: '/trpc/deployments.create',
      headers: () => uploadHeaders(true),
      declare: true,
      status: 413,
    },
    {
      what: 'upload route, declared 100 MB, no token',
      path: '/trpc/deployments.create',
      headers: () => uploadHeaders(false),
      declare: true,
      status: 413,
    },
    {
      what: 'upload route, chunked 100 MB, no token',
      path: '/trpc/deployments.create',
      headers: () => uploadHeaders(false),
      declare: false,
      status: 411,
    },
  ];
  for (const c of hundredMb) {
    it(`100 MB body, ${c.what}: refused quickly, without reading it all`, async () => {
      const a = await send({
        path: c.path,
        headers: c.headers(),
        stream: { bytes: HUNDRED_MB, declare: c.declare },
      });
      expectQuick4xx(c.what, a);
      expect(a.status).toBe(c.status);
      expect(a.sent, `${c.what}: stopped reading early`).toBeLessThan(HUNDRED_MB);
    });
  }

  it('upload route, 4 concurrent chunked 100 MB bodies with a token: each refused (411) before 16 MB is read, in < 5 s', async () => {
    // No length is declared: refused with 411 Length Required before the body is read, nothing buffered.
    const before = await server.memory();
    let peak = rssOf(server.pid);
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssOf(server.pid));
    }, 25);
    const answers = await Promise.all(
      Array.from({ length: 4 }, () =>
        send({
          path: '/trpc/deployments.create',
          headers: uploadHeaders(true),
          stream: { bytes: HUNDRED_MB, declare: false },
          timeoutMs: 30_000,
        }),
      ),
    );
    clearInterval(sampler);
    const after = await server.memory();
    afterUploads = after;
    console.log(
      `[malformed-http] 4 concurrent chunked 100 MB uploads: ${answers
        .map(
          (a) =>
            `${a.status || a.failure} in ${a.ms.toFixed(0)} ms after ${(a.sent / 1024 / 1024).toFixed(0)} MB`,
        )
        .join(', ')}; server RSS ${mb(before.rss)} → peak ${mb(peak)} → ${mb(after.rss)} after GC ` +
        `(heap ${mb(before.heapUsed)} → ${mb(after.heapUsed)}, array buffers ${mb(before.arrayBuffers)} → ${mb(after.arrayBuffers)})`,
    );
    for (const a of answers) {
      results.push({ what: 'upload route, chunked 100 MB, with token (×4)', a });
      // Refused at once; the server reads and drops a little more before closing, so that the client
      // gets the 411 rather than a reset.
      expect(a.sent).toBeLessThan(16 * 1024 * 1024);
      expect(a.ms).toBeLessThan(5_000);
      expect(a.status, a.failure ?? a.body.slice(0, 300)).toBe(411);
      expect(a.body).not.toMatch(/\.ts:\d+|\bat [\w.<>]+ \(/);
    }
    // What the uploads buffered is released (RSS may stay higher: the allocator keeps freed pages).
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(10 * 1024 * 1024);
  });

  // A chunked upload (no Content-Length) would be buffered up to the limit before a 413: an upload
  // without a declared length is answered 411 before a byte of its body is read.
  it('an upload without a declared length is refused (411) before 16 MB is read', async () => {
    const a = await send({
      path: '/trpc/deployments.create',
      headers: uploadHeaders(true),
      stream: { bytes: HUNDRED_MB, declare: false },
      timeoutMs: 30_000,
    });
    expectQuick4xx('upload route, chunked 100 MB, with token', a, false);
    expect([411, 413]).toContain(a.status);
    expect(a.sent, 'bytes the server let the client send before refusing').toBeLessThan(16 * 1024 * 1024);
  });

  it('unknown procedures and paths', async () => {
    expectQuick4xx('GET unknown', await send({ method: 'GET', path: '/trpc/nope.nothing' }));
    expectQuick4xx('POST unknown', await send({ path: '/trpc/nope', headers: json, body: '{}' }));
    expectQuick4xx('GET /trpc/', await send({ method: 'GET', path: '/trpc/' }));
    expectQuick4xx('prototype names', await send({ method: 'GET', path: '/trpc/__proto__' }));
    expectQuick4xx('constructor', await send({ method: 'GET', path: '/trpc/constructor.prototype' }));
    expectQuick4xx('malformed escape', await send({ method: 'GET', path: '/trpc/auth.me%E0%A4%A' }));
    expectQuick4xx(
      'bad input query',
      await send({ method: 'GET', path: '/trpc/projects.list?input=%7B%22json', headers: auth() }),
    );
    expectQuick4xx(
      'mutation as GET',
      await send({ method: 'GET', path: '/trpc/projects.create', headers: auth() }),
    );
    expectQuick4xx('unknown HTTP path', await send({ method: 'GET', path: '/../../etc/passwd' }));
    // In a batch: the unknown call fails on its own, the known one still answers.
    const mixed = await send({ method: 'GET', path: '/trpc/auth.me,nope.nothing?batch=1', headers: auth() });
    results.push({ what: 'batch with an unknown procedure', a: mixed });
    expect(mixed.ms).toBeLessThan(QUICK_MS);
    expect(mixed.status).toBeGreaterThanOrEqual(200);
    expect(mixed.status).toBeLessThan(500);
  });

  it('oversized tokens: 100 KB (Node refuses the header: 431) and 10 KB (401)', async () => {
    expectQuick4xx(
      '100 KB token',
      await send({
        method: 'GET',
        path: '/trpc/auth.me',
        headers: { authorization: `Bearer ${'a'.repeat(100 * 1024)}` },
      }),
    );
    const a = await send({
      method: 'GET',
      path: '/trpc/auth.me',
      headers: { authorization: `Bearer ${'a'.repeat(10 * 1024)}` },
    });
    expectQuick4xx('10 KB token', a);
    expect(a.status).toBe(401);
    // Many headers, and one huge cookie.
    const many = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`x-h${i}`, 'v'.repeat(40)]));
    expectQuick4xx(
      '500 headers of 40 bytes',
      await send({ method: 'GET', path: '/trpc/auth.me', headers: many }),
    );
  });

  it('a batch of 1,000 calls in one request: answered within 5 s, the server keeps serving', async () => {
    const pathOf = (proc: string, n: number) =>
      `/trpc/${Array.from({ length: n }, () => proc).join(',')}?batch=1`;
    const started = performance.now();
    const [batch, during] = await Promise.all([
      send({ method: 'GET', path: pathOf('projects.list', 1000), headers: auth(), timeoutMs: 30_000 }),
      // A normal call made while the batch runs.
      new Promise<Awaited<ReturnType<typeof trpcCall>>>((r) =>
        setTimeout(() => r(trpcCall(server.trpc, 'query', 'auth.me', undefined, { token })), 50),
      ),
    ]);
    results.push({ what: 'batch of 1000 projects.list', a: batch });
    results.push({
      what: 'a normal call during that batch',
      a: { status: during.status, ms: during.ms, body: '', sent: 0 },
    });
    console.log(
      `[malformed-http] batch of 1000 projects.list (one query each): HTTP ${batch.status} in ${batch.ms.toFixed(0)} ms ` +
        `(${(performance.now() - started).toFixed(0)} ms in all), ${batch.body.length} bytes of answer; ` +
        `a normal call during it took ${during.ms.toFixed(0)} ms`,
    );
    expect(batch.status).toBeGreaterThan(0);
    expect(batch.status).toBeLessThan(500);
    expect(batch.ms).toBeLessThan(5_000);
    expect(during.status).toBe(200);
    // tRPC batches are bounded (maxBatchSize 50): one HTTP request cannot carry 1,000 calls.
    expectQuick4xx('batch of 1000', batch, false);
    expect(batch.status).toBe(400);
    expect(during.ms, 'a normal call made meanwhile is not held up').toBeLessThan(500);
  });

  it('a batch of 200 logins for unknown emails in one request: answered, a normal login meanwhile still answered', async () => {
    // Each call costs an argon2 verification (unknown emails cost the same as wrong passwords), and
    // argon2 runs at most ARGON2_MAX_CONCURRENT (2) at a time: one request occupies it for seconds.
    const n = 200;
    const input = Object.fromEntries(
      Array.from({ length: n }, (_, i) => [
        i,
        { json: { email: `nobody-${i}@example.com`, password: 'wrong password' } },
      ]),
    );
    const [batch, during] = await Promise.all([
      send({
        path: `/trpc/${Array.from({ length: n }, () => 'auth.login').join(',')}?batch=1`,
        headers: json,
        body: JSON.stringify(input),
        timeoutMs: 60_000,
      }),
      new Promise<Awaited<ReturnType<typeof trpcCall>>>((r) =>
        setTimeout(
          () =>
            r(
              trpcCall(
                server.trpc,
                'mutation',
                'auth.login',
                { email: 'malformed@example.com', password: 'malformed passphrase' },
                { timeoutMs: 60_000 },
              ),
            ),
          100,
        ),
      ),
    ]);
    results.push({ what: `batch of ${n} auth.login (unknown emails)`, a: batch });
    results.push({
      what: 'a normal login during that batch',
      a: { status: during.status, ms: during.ms, body: '', sent: 0 },
    });
    console.log(
      `[malformed-http] batch of ${n} auth.login: HTTP ${batch.status} in ${batch.ms.toFixed(0)} ms; ` +
        `a normal login during it: ${during.status} in ${during.ms.toFixed(0)} ms`,
    );
    expect(batch.status).toBeGreaterThan(0);
    expect(batch.status).toBeLessThan(500);
    expect(during.status).toBe(200);
    // The batch bound also keeps one request from occupying argon2 for everyone: a normal login made
    // during a batch of 200 logins is answered as if the batch were not there.
    expectQuick4xx('batch of 200 logins', batch, false);
    expect(during.ms).toBeLessThan(1_000);
  });

  it('afterwards: normal calls work, nothing logged at error level, memory back near the baseline', async () => {
    const me = await trpcCall(server.trpc, 'query', 'auth.me', undefined, { token });
    expect(me.status).toBe(200);
    const created = await trpcCall(
      server.trpc,
      'mutation',
      'projects.create',
      { name: 'still-works' },
      { token },
    );
    expect(created.status, created.message).toBe(200);
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    expect(server.exited()).toBe(false);
    const after = await server.memory();
    console.log(
      `[malformed-http] answers:\n${results
        .map(
          ({ what, a }) =>
            `  ${what.padEnd(48)} ${a.status || a.failure} in ${a.ms.toFixed(0)} ms, ${(a.sent / 1024 / 1024).toFixed(1)} MB sent`,
        )
        .join('\n')}\n[malformed-http] server memory after GC: ${mb(baseline.rss)} → ${mb(after.rss)} rss, ` +
        `${mb(baseline.heapUsed)} → ${mb(after.heapUsed)} heap; error log lines ${server.errorLines().length}`,
    );
    // Nothing retained: heap and buffers back near the baseline (a leak would show there). RSS stays
    // higher without a leak: the allocator keeps the pages of the buffered 50 MB uploads and of
    // argon2's 19 MiB per hash (in the libuv threads' malloc arenas); it gets a sanity bound only.
    expect(
      after.heapUsed - baseline.heapUsed,
      `heap ${mb(baseline.heapUsed)} → ${mb(after.heapUsed)}`,
    ).toBeLessThan(30 * 1024 * 1024);
    expect(after.arrayBuffers - baseline.arrayBuffers).toBeLessThan(10 * 1024 * 1024);
    expect(
      after.rss - baseline.rss,
      `RSS ${mb(baseline.rss)} → ${mb(afterUploads?.rss ?? 0)} after the uploads → ${mb(after.rss)}`,
    ).toBeLessThan(400 * 1024 * 1024);
    expect(server.errorLines(), 'no 5xx-class failure was logged').toEqual([]);
  });
});

let afterUploads: MemoryProbe | undefined;
