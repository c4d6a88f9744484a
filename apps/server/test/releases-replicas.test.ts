/**
 * Two replicas on one database and one data folder: A runs the workers, B only the API and the
 * proxy. A redeploy sent through B is built by A and served through both, switching with no failed
 * request on either.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type CodeRunnerClient, createClient } from '@coderunner/api/client';
import { createMigratedTestDatabase, freePort, type MigratedTestDatabase } from '@coderunner/db/testing';
import { createLocalProvider } from '@coderunner/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployFolder, getViaProxy, logText, versionedApp, waitForStatus } from './fixtures/deploy-helpers';
import { type ServerProcess, startServerProcess } from './load/fixtures/server-process';

let db: MigratedTestDatabase;
let dataDir: string;
const servers: ServerProcess[] = [];

beforeAll(async () => {
  db = await createMigratedTestDatabase();
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-replicas-'));
  fs.chmodSync(dataDir, 0o711);
});

afterAll(async () => {
  for (const s of servers) await s.stop(5_000);
  // Apps outlive their servers by design: the ones this test left are killed here.
  const sandboxes = createLocalProvider({ rootDir: path.join(dataDir, 'sandboxes') });
  for (const s of await sandboxes.list().catch(() => [])) await sandboxes.kill(s.id).catch(() => false);
  await db.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const app = versionedApp;
/** GET `<label>.localhost` on a replica's port. */
const get = (port: number, label: string) => getViaProxy(`http://${label}.localhost/`, port);

describe('two replicas', () => {
  it('a redeploy through one is seen and served through the other, with no failed request', async () => {
    const env = {
      DATABASE_URL: db.url,
      CODERUNNER_DATA_DIR: dataDir,
      CODERUNNER_AUTH_SECRET: 'replicas-test-secret-replicas-test-secret',
      CODERUNNER_REDEPLOY_DRAIN_S: '2',
      CODERUNNER_START_TIMEOUT_S: '10',
    };
    const a = await startServerProcess({ port: await freePort(), env });
    servers.push(a);
    const b = await startServerProcess({ port: await freePort(), env: { ...env, WORKER_ENABLED: 'false' } });
    servers.push(b);
    const { token } = await createClient({ url: a.trpc }).auth.register.mutate({
      email: 'replicas@example.com',
      password: 'replicas password',
    });
    const viaA: CodeRunnerClient = createClient({ url: a.trpc, token });
    const viaB: CodeRunnerClient = createClient({ url: b.trpc, token });
    const project = await viaA.projects.create.mutate({ name: 'both' });
    const label = new URL(project.url!).hostname.split('.')[0]!;

    const v1 = await deployFolder(viaA, project.id, app('v1'));
    expect((await waitForStatus(viaA, v1.id, ['RUNNING', 'FAILED'])).status, await logText(viaA, v1.id)).toBe(
      'RUNNING',
    );
    expect(await get(a.port, label)).toEqual({ status: 200, body: 'v1' });
    expect(await get(b.port, label)).toEqual({ status: 200, body: 'v1' });

    const seen: { at: number; port: number; status: number; body: string }[] = [];
    let polling = true;
    const poller = (async () => {
      const inFlight: Promise<void>[] = [];
      while (polling) {
        const at = Date.now();
        for (const port of [a.port, b.port])
          inFlight.push(get(port, label).then((r) => void seen.push({ at, port, ...r })));
        await new Promise((r) => setTimeout(r, 50));
      }
      await Promise.all(inFlight);
    })();
    const v2 = await deployFolder(viaB, project.id, app('v2')); // B has no workers: A builds it
    expect((await waitForStatus(viaB, v2.id, ['RUNNING', 'FAILED'])).status, await logText(viaB, v2.id)).toBe(
      'RUNNING',
    );
    expect((await viaB.projects.get.query({ id: project.id })).currentDeploymentId).toBe(v2.id);
    await waitForStatus(viaB, v1.id, ['STOPPED'], 30_000);
    await new Promise((r) => setTimeout(r, 300));
    polling = false;
    await poller;

    for (const port of [a.port, b.port]) {
      const mine = seen.filter((r) => r.port === port).sort((x, y) => x.at - y.at);
      const failed = mine.filter((r) => r.status !== 200);
      expect(failed, `replica on ${port}: ${JSON.stringify(failed.slice(0, 3))}`).toEqual([]);
      const bodies = mine.map((r) => r.body);
      const firstNew = bodies.indexOf('v2');
      expect(firstNew, `replica on ${port}`).toBeGreaterThan(0);
      expect(
        bodies.slice(firstNew).every((x) => x === 'v2'),
        `replica on ${port}: never back`,
      ).toBe(true);
    }
    expect(a.errorLines()).toEqual([]);
    expect(b.errorLines()).toEqual([]);
  });
});
