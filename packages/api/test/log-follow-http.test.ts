/**
 * The lean path of deployments.logs with follow (log-follow-http.ts) over real HTTP, next to a server
 * that has only tRPC's: the same bytes on the wire, the same refusals, and under load every line in
 * order, resume by event id (typed client and raw Last-Event-ID), followers kept going while old
 * segments are deleted, and a follower that stops reading bounded (it skips ahead, told what it missed).
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Deployment } from '@coderunner/db';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import superjson from 'superjson';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../src/client';
import { type ApiDeps, createRequestContext } from '../src/context';
import { type LogBatch, LogStore } from '../src/deployments/log-store';
import { createLogFollowHandler } from '../src/log-follow-http';
import { appRouter } from '../src/root';
import { followLogs, setupApi, type TestApi } from './helpers';

const describeDb = process.env.DATABASE_URL ? describe : describe.skip;

let api: TestApi;
let logs: LogStore;
/** A store that keeps little (old segments deleted within a few hundred lines), behind its own server. */
let smallLogs: LogStore;
const servers: http.Server[] = [];
let trpcUrl: string;
let leanUrl: string;
let smallUrl: string;
/** Requests the lean servers passed on to tRPC. */
let passedOn = 0;

async function listen(deps: ApiDeps, lean: boolean): Promise<string> {
  const context = (req: http.IncomingMessage, res?: http.ServerResponse) =>
    createRequestContext(deps, { headers: req.headers, ip: '127.0.0.1' }, undefined, res);
  const trpc = createHTTPHandler({ router: appRouter, createContext: ({ req, res }) => context(req, res) });
  const follow = createLogFollowHandler({ createContext: context });
  const server = http.createServer((req, res) => {
    if (lean)
      follow(req, res, () => {
        passedOn++;
        void trpc(req, res);
      });
    else void trpc(req, res);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  api = await setupApi();
  logs = api.deps.deployments!.logs;
  trpcUrl = await listen(api.deps, false);
  leanUrl = await listen(api.deps, true);
  smallLogs = new LogStore(fs.mkdtempSync(path.join(os.tmpdir(), 'cr-lean-logs-')), { maxBytes: 16 * 1024 });
  const service = Object.create(api.deps.deployments!, { logs: { value: smallLogs } });
  smallUrl = await listen({ ...api.deps, deployments: service }, true);
}, 60_000);
afterAll(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  await api?.close();
});

let token: string;
async function newDeployment(): Promise<string> {
  const user = await api.register();
  token = user.token;
  const project = await user.as.projects.create({ name: `lean-${Date.now()}` });
  return (await Deployment.create({ projectId: project.id, status: 'RUNNING' })).id;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const texts = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `line ${from + i}`);

async function waitFor(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Follows through the typed client until the line `lastText` arrives (or stop()). */
const follow = (base: string, id: string, lastText: string, extra: { lastEventId?: string } = {}) =>
  followLogs(base, token, id, lastText, extra);

/** A raw GET of the SSE stream: its status, headers and text as it arrives. */
function rawGet(
  base: string,
  input: unknown,
  headers: Record<string, string> = {},
): Promise<{ res: http.IncomingMessage; text: () => string; req: http.ClientRequest }> {
  const query = encodeURIComponent(JSON.stringify(superjson.serialize(input)));
  return new Promise((resolve, reject) => {
    let text = '';
    const req = http.get(
      `${base}/deployments.logs?input=${query}`,
      { headers: { authorization: `Bearer ${token}`, ...headers } },
      (res) => {
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        resolve({ res, text: () => text, req });
      },
    );
    req.on('error', reject);
  });
}

/** The data events of an SSE text: id and batch. */
function events(text: string): { id: string; data: LogBatch }[] {
  const out: { id: string; data: LogBatch }[] = [];
  for (const block of text.split('\n\n')) {
    const data = /^data: (.*)$/m.exec(block)?.[1];
    const id = /^id: (.*)$/m.exec(block)?.[1];
    if (data && id !== undefined && !/^event: /m.test(block))
      out.push({ id, data: superjson.deserialize(JSON.parse(data)) });
  }
  return out;
}

/** Each batch follows on from the one before: first id = last id + 1 + missed. */
function consistent(batches: LogBatch[]): boolean {
  let last: number | null = null;
  for (const b of batches) {
    for (let i = 1; i < b.lines.length; i++) if (b.lines[i]!.id !== b.lines[i - 1]!.id + 1) return false;
    if (last !== null && b.lines[0]!.id !== last + 1 + (b.missed ?? 0)) return false;
    last = b.lines.at(-1)!.id;
  }
  return true;
}

describeDb('deployments.logs follow: the lean path', () => {
  it('sends the same bytes and headers as tRPC: the connected event, then tracked batches', async () => {
    const id = await newDeployment();
    logs.append(id, 'app', 'stdout', 'one\ntwo\nthree');
    const input = { id, follow: true, tail: 2 };
    const before = passedOn;
    const [viaTrpc, viaLean] = await Promise.all([rawGet(trpcUrl, input), rawGet(leanUrl, input)]);
    await waitFor(() => viaTrpc.text().includes('id: ') && viaLean.text().includes('id: '), 'the history');
    logs.append(id, 'app', 'stderr', 'four');
    await waitFor(
      () => events(viaTrpc.text()).length === 2 && events(viaLean.text()).length === 2,
      'a live batch',
    );
    expect(viaLean.text()).toBe(viaTrpc.text());
    expect(viaLean.text().startsWith('event: connected\ndata: {}\n\n')).toBe(true);
    expect(events(viaLean.text()).map((e) => e.data.lines.map((l) => l.text))).toEqual([
      ['two', 'three'],
      ['four'],
    ]);
    for (const name of ['content-type', 'cache-control', 'x-accel-buffering', 'connection'])
      expect(viaLean.res.headers[name]).toBe(viaTrpc.res.headers[name]);
    expect(viaLean.res.statusCode).toBe(200);
    expect(passedOn).toBe(before); // the lean path answered
    viaTrpc.req.destroy();
    viaLean.req.destroy();
  });

  it('refuses exactly as the procedure does: token, input, ownership', async () => {
    const id = await newDeployment();
    const mine = token;
    const other = (await api.register()).token;
    const cases: { token: string | null; input: Record<string, unknown> }[] = [
      { token: null, input: { id, follow: true } },
      { token: 'not-a-token', input: { id, follow: true } },
      { token: other, input: { id, follow: true } },
      { token: mine, input: { id: 'nope', follow: true } },
      { token: mine, input: { id, follow: true, tail: 0 } },
      { token: mine, input: { id, follow: true, extra: 1 } },
      { token: mine, input: { id: '00000000-0000-4000-8000-000000000000', follow: true } },
    ];
    const refusal = (base: string, c: (typeof cases)[number]) =>
      new Promise<{ message: string; code: unknown }>((resolve) => {
        const client = createClient({ url: base, token: c.token });
        // biome-ignore lint/suspicious/noExplicitAny: invalid inputs on purpose
        const sub = client.deployments.logs.subscribe(c.input as any, {
          onData: () => resolve({ message: 'streamed', code: null }),
          onError: (err) => {
            sub.unsubscribe();
            resolve({ message: err.message, code: err.data?.code });
          },
        });
      });
    for (const c of cases) {
      const before = passedOn;
      const viaLean = await refusal(leanUrl, c);
      expect(passedOn).toBe(before + 1); // tRPC answered the refusal
      expect(viaLean).toEqual(await refusal(trpcUrl, c));
      expect(viaLean.code).toMatch(/UNAUTHORIZED|NOT_FOUND|BAD_REQUEST/);
    }
    token = mine;
  });

  it('hands 300 followers every line of a fast writer, in order, in batches, the same frame to all', async () => {
    const id = await newDeployment();
    logs.append(id, 'system', 'info', 'line 0');
    const total = 3_000;
    const last = `line ${total - 1}`;
    const before = passedOn;
    const followers = Array.from({ length: 300 }, () => follow(leanUrl, id, last));
    await waitFor(() => followers.every((f) => f.lines.length >= 1), 'every follower to get the history');
    for (let i = 1; i < total; i += 10) {
      logs.append(id, 'app', 'stdout', texts(Math.min(10, total - i), i).join('\n'));
      await sleep(2);
    }
    await Promise.all(followers.map((f) => f.done));
    for (const f of followers) {
      expect(f.lines.map((l) => l.text)).toEqual(texts(total));
      expect(f.lines.every((l) => l.time instanceof Date)).toBe(true);
      for (const e of f.events) expect(e.id).toBe(String(e.data.lines.at(-1)!.id));
      expect(f.events.some((e) => e.data.missed)).toBe(false);
      expect(f.events.length).toBeLessThan(total / 2);
    }
    expect(passedOn).toBe(before);
    // The server let go of them all: no feed left for the deployment.
    await waitFor(() => logs.followedDeployments === 0, 'the feeds to close', 5_000);
  }, 120_000);

  it('resumes after a dropped connection, by the typed client and by a raw Last-Event-ID', async () => {
    const id = await newDeployment();
    const total = 600;
    const last = `line ${total - 1}`;
    const first = follow(leanUrl, id, last);
    let i = 0;
    const write = async (until: number) => {
      for (; i < until; i += 5) {
        logs.append(id, 'app', 'stdout', texts(5, i).join('\n'));
        await sleep(3);
      }
    };
    await write(200);
    await waitFor(() => first.lines.length >= 150, 'the first connection to get lines');
    first.stop();
    const resumeFrom = first.events.at(-1)!.id;
    await write(400);
    const second = follow(leanUrl, id, last, { lastEventId: resumeFrom });
    const raw = await rawGet(leanUrl, { id, follow: true }, { 'last-event-id': resumeFrom });
    await write(total);
    await second.done;
    expect([...first.lines, ...second.lines].map((l) => l.text)).toEqual(texts(total));
    await waitFor(() => events(raw.text()).at(-1)?.data.lines.at(-1)?.text === last, 'the raw follower');
    const rawLines = events(raw.text()).flatMap((e) => e.data.lines.map((l) => l.text));
    expect([...first.lines.map((l) => l.text), ...rawLines]).toEqual(texts(total));
    raw.req.destroy();
  }, 60_000);

  it('keeps followers going while old segments are deleted, telling a late one what it missed', async () => {
    const id = await newDeployment();
    smallLogs.append(id, 'system', 'info', 'line 0');
    const total = 4_000;
    const last = `line ${total - 1}`;
    const followers = Array.from({ length: 50 }, () => follow(smallUrl, id, last));
    await waitFor(() => followers.every((f) => f.lines.length >= 1), 'every follower to get the history');
    for (let i = 1; i < total; i += 20) {
      smallLogs.append(id, 'app', 'stdout', texts(Math.min(20, total - i), i).join('\n'));
      await sleep(2);
    }
    await Promise.all(followers.map((f) => f.done));
    for (const f of followers) expect(f.lines.map((l) => l.text)).toEqual(texts(total));
    await smallLogs.settled(id);
    // Resuming after line 1: most of the log is gone; the follower is told how much.
    const late = follow(smallUrl, id, last, { lastEventId: '1' });
    await late.done;
    const firstKept = late.lines[0]!.id;
    expect(firstKept).toBeGreaterThan(100);
    expect(late.events[0]!.data.missed).toBe(firstKept - 2);
    expect(consistent(late.events.map((e) => e.data))).toBe(true);
  }, 60_000);

  it('bounds a follower that stops reading: it skips ahead, told what it missed, while another keeps up', async () => {
    const id = await newDeployment();
    logs.append(id, 'system', 'info', 'start');
    const total = 30_000;
    const pad = 'x'.repeat(600);
    const last = `line ${total - 1} ${pad}`;
    const brisk = follow(leanUrl, id, last);
    const slow = await rawGet(leanUrl, { id, follow: true });
    await waitFor(() => events(slow.text()).length === 1 && brisk.lines.length === 1, 'the history');
    slow.res.pause(); // reads nothing more: the socket's buffers fill up
    for (let i = 0; i < total; i += 100) {
      logs.append(
        id,
        'app',
        'stdout',
        Array.from({ length: 100 }, (_, k) => `line ${i + k} ${pad}`).join('\n'),
      );
      await sleep(3);
    }
    await brisk.done;
    expect(brisk.lines.length).toBe(total + 1);
    expect(brisk.events.some((e) => e.data.missed)).toBe(false);
    slow.res.resume();
    await waitFor(() => events(slow.text()).at(-1)?.data.lines.at(-1)?.text === last, 'the slow follower');
    const got = events(slow.text()).map((e) => e.data);
    const missed = got.reduce((n, b) => n + (b.missed ?? 0), 0);
    const lines = got.reduce((n, b) => n + b.lines.length, 0);
    // It skipped lines (what it held was bounded) and was told exactly how many.
    expect(missed).toBeGreaterThan(0);
    expect(lines + missed).toBe(total + 1);
    expect(consistent(got)).toBe(true);
    slow.req.destroy();
  }, 120_000);

  it('ends every follower (lean, tRPC, typed client) once the deployment stops, is replaced or destroyed: the last lines, then why', async () => {
    /** Follows `id` on both servers raw and through the typed client, until each stream ends. */
    const followToEnd = async (id: string) => {
      const input = { id, follow: true };
      const raw = await Promise.all([rawGet(trpcUrl, input), rawGet(leanUrl, input)]);
      const rawEnded = raw.map(({ res }) => new Promise<void>((resolve) => res.on('end', () => resolve())));
      const client = createClient({ url: leanUrl, token });
      const typed: LogBatch[] = [];
      const typedEnded = new Promise<void>((resolve, reject) => {
        client.deployments.logs.subscribe(input, {
          onData: (event) => typed.push(event.data),
          onComplete: resolve,
          onError: reject,
        });
      });
      await waitFor(() => raw.every((r) => r.text().includes('id: ')) && typed.length > 0, 'the history');
      return {
        ended: Promise.all([...rawEnded, typedEnded]),
        batches: () => [...raw.map((r) => events(r.text()).map((e) => e.data)), typed],
        texts: () => raw.map((r) => r.text()),
      };
    };
    const check = (batches: LogBatch[][], lastText: string, end: LogBatch['end']) => {
      for (const stream of batches) {
        expect(stream.flatMap((b) => b.lines.map((l) => l.text)).at(-1)).toBe(lastText);
        expect(stream.at(-1)).toEqual({ lines: [], end });
        expect(stream.filter((b) => b.end)).toHaveLength(1);
      }
    };

    // Stopped: the line written after the status changed (as a stop's or failure's own line is) still arrives.
    const stopped = await newDeployment();
    logs.append(stopped, 'app', 'stdout', 'first');
    const a = await followToEnd(stopped);
    await Deployment.update({ status: 'STOPPED' }, { where: { id: stopped } });
    logs.append(stopped, 'system', 'info', 'stopped (written after the status)');
    await a.ended;
    check(a.batches(), 'stopped (written after the status)', { status: 'STOPPED' });
    for (const text of a.texts()) expect(text.slice(-60)).toMatch(/event: return\ndata: \n\n+$/);

    // Replaced: a newer deployment of the project runs, this one stops.
    const old = await newDeployment();
    logs.append(old, 'app', 'stdout', 'v1');
    const b = await followToEnd(old);
    const { projectId } = (await Deployment.findByPk(old))!;
    const newer = await Deployment.create({ projectId, status: 'RUNNING' });
    await Deployment.update({ status: 'STOPPED' }, { where: { id: old } });
    await b.ended;
    check(b.batches(), 'v1', { status: 'STOPPED', replacedBy: newer.id });

    // Failed, and destroyed (also a follow opened on a deployment that has already ended).
    const failed = await newDeployment();
    logs.append(failed, 'system', 'info', 'FAILED: it crashed');
    const c = await followToEnd(failed);
    await Deployment.update({ status: 'FAILED' }, { where: { id: failed } });
    await c.ended;
    check(c.batches(), 'FAILED: it crashed', { status: 'FAILED' });
    await Deployment.update({ status: 'DESTROYED' }, { where: { id: failed } });
    const d = await followToEnd(failed);
    await d.ended;
    check(d.batches(), 'FAILED: it crashed', { status: 'DESTROYED' });
  }, 60_000);
});
