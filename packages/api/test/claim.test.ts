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

function engineOn(url: string, opts: { logs?: LogStore; stuckAfterMs?: number; maxRetries?: number } = {}) {
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
    maxRetries: opts.maxRetries ?? 1,
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
        'the worker building this deployment stopped; building it again (retry 1 of 1)',
        'FAILED: the worker building this deployment stopped, repeatedly',
      ]);
    } finally {
      await logsB.close();
      await Promise.all([a, b].map((w) => w.sequelize.close()));
    }
  });

  /** A BUILDING row whose worker is gone, and a reconcile pass that finds it: its status after it. */
  async function interrupt(engine: DeploymentEngine, id: string): Promise<string> {
    await Deployment.update({ status: 'BUILDING' }, { where: { id } });
    await new Promise((r) => setTimeout(r, 20)); // its heartbeat is now older than stuckAfterMs
    await engine.reconcile();
    return (await Deployment.findByPk(id))!.status;
  }

  it('counts retries however much the builds printed after them, up to CODERUNNER_BUILD_RETRIES', async () => {
    const logs = new LogStore(path.join(dir, 'long-logs'));
    const { engine, sequelize } = engineOn(api.db.url, { logs, stuckAfterMs: 1, maxRetries: 3 });
    const user = await User.create({ email: 'long-builds@example.com', passwordHash: 'x' });
    const project = await Project.create({ userId: user.id, name: 'p' });
    const row = await Deployment.create({ projectId: project.id, status: 'BUILDING' });
    logs.append(row.id, 'system', 'info', 'queued (1.0 KiB upload)', { type: 'queued' });
    try {
      // A chatty build: far more lines than a page of the log, all after the previous retry's line.
      const chatty = Array.from({ length: 12_000 }, (_, i) => `npm: ${i}`).join('\n');
      for (const expected of ['PENDING', 'PENDING', 'PENDING', 'FAILED']) {
        logs.append(row.id, 'build', 'stdout', chatty);
        expect(await interrupt(engine, row.id)).toBe(expected);
      }
      const system = (await logs.read(row.id, null, Number.MAX_SAFE_INTEGER))
        .filter((l) => l.source === 'system')
        .map((l) => l.text);
      // The 2 MB log has dropped the oldest lines by now (the first retry's among them); the count
      // still holds, since each retry's line carries its number.
      expect(system.slice(-3)).toEqual([
        'the worker building this deployment stopped; building it again (retry 2 of 3)',
        'the worker building this deployment stopped; building it again (retry 3 of 3)',
        'FAILED: the worker building this deployment stopped, repeatedly',
      ]);
    } finally {
      await engine.stop();
      await logs.close();
      await sequelize.close();
    }
  });

  it('counts retries from the typed events, not the wording: a retry event counts whatever its text, a look-alike line does not', async () => {
    const logs = new LogStore(path.join(dir, 'event-logs'));
    const { engine, sequelize } = engineOn(api.db.url, { logs, stuckAfterMs: 1, maxRetries: 2 });
    const user = await User.create({ email: 'event-retries@example.com', passwordHash: 'x' });
    const project = await Project.create({ userId: user.id, name: 'p' });
    const row = await Deployment.create({ projectId: project.id, status: 'BUILDING' });
    logs.append(row.id, 'system', 'info', 'in die Warteschlange', { type: 'queued' });
    logs.append(
      row.id,
      'system',
      'info',
      'the worker building this deployment stopped; building it again (retry 2 of 2)',
    );
    logs.append(row.id, 'system', 'info', 'neu gebaut (1/2)', { type: 'retry', n: 1, of: 2 });
    try {
      expect(await interrupt(engine, row.id)).toBe('PENDING'); // retry 2 of 2: the event said 1
      const events = (await logs.read(row.id, null)).flatMap((l) => (l.event ? [l.event] : []));
      expect(events.at(-1)).toEqual({ type: 'retry', n: 2, of: 2 });
      expect(await interrupt(engine, row.id)).toBe('FAILED');
      expect(await logs.failureReason(row.id)).toBe(
        'the worker building this deployment stopped, repeatedly',
      );
      // A new series (queued again) starts the count afresh.
      await Deployment.update({ status: 'STOPPED' }, { where: { id: row.id } });
      logs.append(row.id, 'system', 'info', 'starting again', { type: 'queued' });
      expect(await interrupt(engine, row.id)).toBe('PENDING');
    } finally {
      await engine.stop();
      await logs.close();
      await sequelize.close();
    }
  });

  it('does not retry when the bounded log no longer shows how many retries there were', async () => {
    // A log kept to 64 KiB: a build's output pushes the series' start (and any retry) out of it.
    const logs = new LogStore(path.join(dir, 'cut-logs'), { maxBytes: 64 * 1024 });
    const { engine, sequelize } = engineOn(api.db.url, { logs, stuckAfterMs: 1, maxRetries: 5 });
    const user = await User.create({ email: 'cut-logs@example.com', passwordHash: 'x' });
    const project = await Project.create({ userId: user.id, name: 'p' });
    const row = await Deployment.create({ projectId: project.id, status: 'BUILDING' });
    logs.append(row.id, 'system', 'info', 'queued (1.0 KiB upload)', { type: 'queued' });
    try {
      logs.append(row.id, 'build', 'stdout', Array.from({ length: 200 }, (_, i) => `short: ${i}`).join('\n'));
      expect(await interrupt(engine, row.id)).toBe('PENDING'); // the start is still there: retry 1
      logs.append(
        row.id,
        'build',
        'stdout',
        Array.from({ length: 4_000 }, (_, i) => `${'x'.repeat(40)} ${i}`).join('\n'),
      );
      const kept = await logs.read(row.id, null, Number.MAX_SAFE_INTEGER);
      expect(kept[0]!.id).toBeGreaterThan(1); // the oldest lines, the retry's among them, are gone
      expect(kept.some((l) => l.source === 'system')).toBe(false);
      expect(await interrupt(engine, row.id)).toBe('FAILED');
      const last = (await logs.read(row.id, null, 1))[0]!.text;
      expect(last).toMatch(
        /^FAILED: the worker building this deployment stopped, and its log no longer shows/,
      );
      expect(last).toContain('coderunner redeploy');
    } finally {
      await engine.stop();
      await logs.close();
      await sequelize.close();
    }
  });
});
