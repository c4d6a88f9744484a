import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, Deployment, Project, User } from '@coderunner/db';
import type { SandboxProvider } from '@coderunner/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeploymentEngine } from '../src/deployments/engine';
import { LogStore } from '../src/deployments/log-store';
import { SourceStore } from '../src/deployments/source-store';
import { setupApi, type TestApi } from './helpers';

let api: TestApi;
let dir: string;
beforeAll(async () => {
  api = await setupApi();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-claim-'));
});
afterAll(async () => {
  await api.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function engineOn(url: string, opts: { logs?: LogStore; stuckAfterMs?: number } = {}) {
  const sequelize = connect(url, { poolMax: 3 });
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  const engine = new DeploymentEngine({
    sequelize,
    // claim() never touches the provider; reconcile() only lists (nothing) here.
    provider: { name: 'local', list: async () => [], kill: async () => false } as unknown as SandboxProvider,
    logs: opts.logs ?? new LogStore(path.join(dir, 'logs')),
    sources: new SourceStore(path.join(dir, 'sources')),
    workDir: dir,
    publicUrlFor: () => 'http://unused/',
    projectUrlFor: (slug) => `http://${slug}.localhost/`,
    redeployDrainMs: 1_000,
    appPort: async () => 0,
    concurrency: 1,
    installTimeoutMs: 1,
    buildTimeoutMs: 1,
    startTimeoutMs: 1,
    stuckAfterMs: opts.stuckAfterMs ?? 60_000,
    maxRetries: 1,
    reconcileIntervalMs: 60_000,
    logger: quiet,
  });
  return { engine, sequelize };
}

describe('claiming PENDING deployments', () => {
  it('two workers and 20 PENDING rows: each row is claimed exactly once', async () => {
    const user = await User.create({ email: 'claims@example.com', passwordHash: 'x' });
    const project = await Project.create({ userId: user.id, name: 'p' });
    const rows = await Deployment.bulkCreate(
      Array.from({ length: 20 }, () => ({ projectId: project.id })),
      { returning: true },
    );
    const workers = [engineOn(api.db.url), engineOn(api.db.url)];
    try {
      const claimedBy: string[][] = [[], []];
      await Promise.all(
        workers.map(async ({ engine }, i) => {
          for (;;) {
            const row = await engine.claim();
            if (!row) return;
            expect(row.status).toBe('PROVISIONING');
            claimedBy[i]!.push(row.id);
            await new Promise((r) => setTimeout(r, 2)); // interleave
          }
        }),
      );
      const all = [...claimedBy[0]!, ...claimedBy[1]!];
      expect(all).toHaveLength(20);
      expect(new Set(all)).toEqual(new Set(rows.map((r) => r.id)));
      expect(claimedBy[0]!.length).toBeGreaterThan(0);
      expect(claimedBy[1]!.length).toBeGreaterThan(0);
      expect(await Deployment.count({ where: { status: 'PENDING' } })).toBe(0);
    } finally {
      await Promise.all(workers.map((w) => w.sequelize.close()));
    }
  });

  it('a build interrupted twice FAILS whichever replica notices: retries are counted in the shared log, not per process', async () => {
    // Two replicas: a LogStore each on the one data folder, a reconciler each. (Created first: the
    // models are bound to the last connection made.)
    const logsA = new LogStore(path.join(dir, 'shared-logs'));
    const logsB = new LogStore(path.join(dir, 'shared-logs'));
    const a = engineOn(api.db.url, { logs: logsA, stuckAfterMs: 1 });
    const b = engineOn(api.db.url, { logs: logsB, stuckAfterMs: 1 });
    const user = await User.create({ email: 'retries@example.com', passwordHash: 'x' });
    const project = await Project.create({ userId: user.id, name: 'p' });
    const row = await Deployment.create({ projectId: project.id, status: 'BUILDING' });
    try {
      await new Promise((r) => setTimeout(r, 20)); // its heartbeat is now older than stuckAfterMs
      await a.engine.reconcile();
      await a.engine.stop();
      expect((await Deployment.findByPk(row.id))!.status).toBe('PENDING');
      await logsA.close(); // written to disk, where B reads it

      // Claimed and interrupted again; B, which never saw the first retry, notices this one.
      await Deployment.update({ status: 'BUILDING' }, { where: { id: row.id } });
      await new Promise((r) => setTimeout(r, 20));
      await b.engine.reconcile();
      await b.engine.stop();
      expect((await Deployment.findByPk(row.id))!.status).toBe('FAILED');
      const text = (await logsB.read(row.id, null)).map((l) => l.text);
      expect(text).toEqual([
        'the worker building this deployment stopped; building it again',
        'FAILED: the worker building this deployment stopped, repeatedly',
      ]);
    } finally {
      await logsB.close();
      await Promise.all([a, b].map((w) => w.sequelize.close()));
    }
  });
});
