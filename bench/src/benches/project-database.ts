/**
 * project-database — how long a project waits for its own PostgreSQL: create → ready (accepting the
 * app's login) for the first database of a server (initdb of the template included) and for later
 * ones (a copy of the template and a start), and how long a killed postmaster takes to answer again.
 * Run as root where isolation is available: the clusters then run as they do in production (own
 * uid, bubblewrap with the seccomp filter, cgroup with the free plan's limits).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  createProjectClusters,
  DEFAULT_LIMITS,
  detectIsolation,
  stopProjectClusters,
} from '@coderunner/sandbox';
import pg from 'pg';
import type { BenchContext, BenchOutput } from '../lib/context';

const LATER = 5;
const KILLS = 3;

async function answers(url: string, deadlineMs: number): Promise<number> {
  const since = Date.now();
  for (;;) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
      return Date.now() - since;
    } catch (err) {
      if (Date.now() - since > deadlineMs) throw err;
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      await client.end().catch(() => {});
    }
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function projectDatabase(ctx: BenchContext): Promise<BenchOutput> {
  const tools = detectIsolation('auto').tools;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-project-db-'));
  fs.chmodSync(dataDir, 0o711);
  ctx.scope.defer('remove the data folder', () => fs.rmSync(dataDir, { recursive: true, force: true }));
  ctx.scope.defer('stop the clusters', () => stopProjectClusters(dataDir));
  const clusters = createProjectClusters({ dataDir, tools, limits: () => DEFAULT_LIMITS });
  ctx.scope.defer('close', () => clusters.close({ stopClusters: true }));

  let t = Date.now();
  const first = await clusters.provision('00000000-0000-4000-8000-000000000000');
  const firstMs = Date.now() - t;
  ctx.log(`first database (template initdb included): ${firstMs} ms`);
  const later: number[] = [];
  for (let i = 1; i <= LATER; i++) {
    t = Date.now();
    await clusters.provision(`00000000-0000-4000-8000-00000000000${i}`);
    later.push(Date.now() - t);
  }
  ctx.log(`later databases: ${later.join(', ')} ms`);
  const kills: number[] = [];
  const pidFile = path.join(dataDir, 'databases', first.sandboxId, 'pg', 'postmaster.pid');
  for (let i = 0; i < KILLS; i++) {
    process.kill(Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]), 'SIGKILL');
    kills.push(await answers(first.connectionInfo.url, 60_000));
    await new Promise((r) => setTimeout(r, 1500));
  }
  ctx.log(`kill -9 → answering: ${kills.join(', ')} ms`);
  const isolation = tools
    ? 'isolated (own uid, bubblewrap + seccomp, cgroup of the free plan)'
    : 'not isolated';
  return {
    line: `project-database: first ${(firstMs / 1000).toFixed(2)} s (initdb of the template), later median ${(median(later) / 1000).toFixed(2)} s, kill -9 → answering median ${(median(kills) / 1000).toFixed(2)} s`,
    details: [
      `- clusters: ${isolation}; ${os.loadavg()[0]!.toFixed(1)} load average at the end`,
      `- create → ready, first database of a data folder: ${firstMs} ms`,
      `- create → ready, the next ${LATER}: ${later.join(', ')} ms (median ${median(later)})`,
      `- kill -9 of the postmaster → a query answers: ${kills.join(', ')} ms (median ${median(kills)})`,
    ],
    database: 'none (embedded project clusters only)',
  };
}
