/**
 * deployments.logs over real HTTP (SSE through the typed client) alongside in-process followers of
 * the same store: a fast writer, hundreds of followers, batches in order with nothing lost, and a
 * dropped connection resumed by its last event id.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Deployment } from '@coderunner/db';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../src/client';
import { createRequestContext } from '../src/context';
import type { LogBatch, LogLine, LogStore } from '../src/deployments/log-store';
import { appRouter } from '../src/root';
import { followLogs, setupApi, type TestApi } from './helpers';

const describeDb = process.env.DATABASE_URL ? describe : describe.skip;

let api: TestApi;
let server: http.Server;
let url: string;
let token: string;
let logs: LogStore;

beforeAll(async () => {
  api = await setupApi();
  const user = await api.register();
  token = user.token;
  logs = api.deps.deployments!.logs;
  const handler = createHTTPHandler({
    router: appRouter,
    createContext: ({ req }) => createRequestContext(api.deps, { headers: req.headers, ip: '127.0.0.1' }),
  });
  server = http.createServer((req, res) => void handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 60_000);
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await api?.close();
});

async function newDeployment(): Promise<string> {
  const user = await api.register();
  token = user.token;
  const project = await user.as.projects.create({ name: `logs-${Date.now()}` });
  return (await Deployment.create({ projectId: project.id, status: 'RUNNING' })).id;
}

/** Follows over HTTP until the line `lastText` arrives (or stop()). */
const followOverHttp = (id: string, lastText: string, lastEventId?: string) =>
  followLogs(url, token, id, lastText, lastEventId ? { lastEventId } : {});

async function followInProcess(id: string, lastText: string): Promise<LogLine[]> {
  const controller = new AbortController();
  const lines: LogLine[] = [];
  for await (const batch of logs.follow(id, null, controller.signal)) {
    lines.push(...batch.lines);
    if (batch.lines.at(-1)?.text === lastText) controller.abort();
  }
  return lines;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const texts = (n: number) => Array.from({ length: n }, (_, i) => `line ${i}`);

async function waitFor(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describeDb('deployments.logs over HTTP', () => {
  it('hands 100 HTTP and 200 in-process followers every line of a fast writer, in order, batched', async () => {
    const id = await newDeployment();
    logs.append(id, 'system', 'info', 'line 0');
    const total = 2_000;
    const last = `line ${total - 1}`;
    const overHttp = Array.from({ length: 100 }, () => followOverHttp(id, last));
    const inProcess = Array.from({ length: 200 }, () => followInProcess(id, last));
    await waitFor(() => overHttp.every((f) => f.lines.length >= 1), 'every follower to get the history');
    for (let i = 1; i < total; i += 10) {
      logs.append(
        id,
        'app',
        'stdout',
        texts(total)
          .slice(i, i + 10)
          .join('\n'),
      );
      await sleep(2);
    }
    await Promise.all(overHttp.map((f) => f.done));
    for (const f of overHttp) {
      expect(f.lines.map((l) => l.text)).toEqual(texts(total));
      expect(f.lines.every((l) => l.time instanceof Date)).toBe(true);
      // Each event's id is its last line's id: what a reconnecting client resumes after.
      for (const e of f.events) expect(e.id).toBe(String(e.data.lines.at(-1)!.id));
      expect(f.events.some((e) => e.data.missed)).toBe(false);
      expect(f.events.length).toBeLessThan(total / 2);
    }
    for (const lines of await Promise.all(inProcess)) expect(lines.map((l) => l.text)).toEqual(texts(total));
  }, 120_000);

  it('resumes after a dropped connection from the last event id, losing and repeating nothing', async () => {
    const id = await newDeployment();
    const total = 600;
    const last = `line ${total - 1}`;
    const first = followOverHttp(id, last);
    let i = 0;
    const write = async (until: number) => {
      for (; i < until; i += 5) {
        logs.append(
          id,
          'app',
          'stdout',
          texts(total)
            .slice(i, i + 5)
            .join('\n'),
        );
        await sleep(3);
      }
    };
    await write(200);
    await waitFor(() => first.lines.length >= 150, 'the first connection to get lines');
    first.stop(); // the connection drops; lines go on being written meanwhile
    const resumeFrom = first.events.at(-1)!.id;
    await write(400);
    const second = followOverHttp(id, last, resumeFrom);
    await write(total);
    await second.done;
    expect([...first.lines, ...second.lines].map((l) => l.text)).toEqual(texts(total));
  }, 60_000);

  it('without follow: the history in batches of at most 1,000 lines, then the stream ends', async () => {
    const id = await newDeployment();
    logs.append(id, 'app', 'stdout', texts(2_500).join('\n'));
    const client = createClient({ url, token });
    const events: { id: string; data: LogBatch }[] = [];
    await new Promise<void>((resolve, reject) => {
      client.deployments.logs.subscribe(
        { id, tail: 2_500 },
        { onData: (e) => events.push(e), onError: reject, onComplete: resolve },
      );
    });
    expect(events.map((e) => e.data.lines.length)).toEqual([1_000, 1_000, 500]);
    expect(events.flatMap((e) => e.data.lines.map((l) => l.text))).toEqual(texts(2_500));
  }, 60_000);
});
