/**
 * deployments.watch over real HTTP: many watchers of one deployment share one feed (one query per
 * change or per poll, not one per watcher), and each still gets the current state first, then every
 * change, and the end once the deployment is DESTROYED.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Deployment } from '@coderunner/db';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../src/client';
import { createRequestContext } from '../src/context';
import type { DeploymentDto } from '../src/dto';
import { appRouter } from '../src/root';
import { setupApi, type TestApi } from './helpers';

const describeDb = process.env.DATABASE_URL ? describe : describe.skip;

let api: TestApi;
let server: http.Server;
let url: string;
/** Statements the server ran that read one deployment by id (the watch feeds' query). */
let statusReads = 0;

beforeAll(async () => {
  api = await setupApi();
  const sequelize = api.deps.sequelize;
  const query = sequelize.query.bind(sequelize);
  sequelize.query = ((sql: unknown, ...rest: unknown[]) => {
    if (typeof sql === 'string' && /FROM deployments d WHERE d\.id =/.test(sql)) statusReads++;
    return (query as (...args: unknown[]) => unknown)(sql, ...rest);
  }) as typeof sequelize.query;
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitFor(check: () => boolean, what: string, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describeDb('deployments.watch', () => {
  it('200 watchers share one feed: the state first, each change once, the end at DESTROYED', async () => {
    const user = await api.register();
    const project = await user.as.projects.create({ name: 'watched' });
    const deployment = await Deployment.create({ projectId: project.id, status: 'BUILDING' });
    const id = deployment.id;
    const client = createClient({ url, token: user.token });
    const watchers = Array.from({ length: 200 }, () => {
      const seen: DeploymentDto['status'][] = [];
      let complete = false;
      client.deployments.watch.subscribe(
        { id },
        { onData: (d) => seen.push(d.status), onComplete: () => (complete = true) },
      );
      return { seen, done: () => complete };
    });
    await waitFor(() => watchers.every((w) => w.seen.length === 1), 'every watcher to get the state');
    expect(watchers.every((w) => w.seen[0] === 'BUILDING')).toBe(true);

    // Idle: one poll per 2 s for the deployment, not one per watcher.
    await sleep(500);
    const before = statusReads;
    await sleep(4_100);
    expect(statusReads - before).toBeGreaterThanOrEqual(1);
    expect(statusReads - before).toBeLessThanOrEqual(3);

    // A change with its NOTIFY: every watcher sees it, from one read.
    const events = api.deps.deployments!.events;
    const change = async (status: 'RUNNING' | 'DESTROYED') => {
      await Deployment.update({ status }, { where: { id } });
      events.emit(id, { id, status });
    };
    const reads = statusReads;
    await change('RUNNING');
    await waitFor(() => watchers.every((w) => w.seen.length === 2), 'every watcher to see RUNNING');
    expect(statusReads - reads).toBeGreaterThanOrEqual(1);
    expect(statusReads - reads).toBeLessThanOrEqual(2);
    await change('DESTROYED');
    await waitFor(() => watchers.every((w) => w.done()), 'every watcher to end');
    for (const w of watchers) expect(w.seen).toEqual(['BUILDING', 'RUNNING', 'DESTROYED']);
  }, 60_000);
});
