/**
 * real-apps: create → RUNNING of the Express starter (`npx express-generator --view=pug`, generated
 * once into apps/server/test/fixtures/starters/express-app, no node_modules; the starter the frameworks' tests deploy) on the free plan: its first deploy
 * (nothing cached: `npm ci` from the registry), redeploys with the same lockfile (node_modules from
 * the project's build cache, no install), and deploys whose lockfile differs by its root name only
 * (node_modules not reused: `npm ci` with npm's cache warm), which says what skipping the install buys
 * over a warm `npm ci`.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { CodeRunnerClient } from '@coderunner/api/client';
import { packFolder } from '@coderunner/api/pack';
import type { BenchContext, BenchOutput } from '../lib/context';
import { client, register, withPg } from '../lib/http';
import { BENCH_DIR, freshDatabase, newAuthSecret, startCodeRunner, tempDir } from '../lib/services';
import { median, ratio, seconds } from '../lib/stats';
import { killSandboxProcesses } from './deploy';

// The same starter the frameworks' tests deploy (one copy in the repository).
const FIXTURE = path.join(BENCH_DIR, '..', 'apps', 'server', 'test', 'fixtures', 'starters', 'express-app');
const REPEATS = 2;
const DEPLOY_TIMEOUT_MS = 300_000;

function waitRunning(api: CodeRunnerClient, id: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sub.unsubscribe();
      reject(new Error(`deployment ${id} not RUNNING within ${DEPLOY_TIMEOUT_MS} ms`));
    }, DEPLOY_TIMEOUT_MS);
    const sub = api.deployments.watch.subscribe(
      { id },
      {
        onData: (d) => {
          if (d.status !== 'RUNNING' && d.status !== 'FAILED') return;
          clearTimeout(timer);
          sub.unsubscribe();
          if (d.status === 'RUNNING') resolve(Date.now());
          else reject(new Error(`deployment ${id} FAILED: ${d.failureReason ?? ''}`));
        },
        onError: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      },
    );
  });
}

/** The deployment's system lines, from its stored log. */
function systemLines(dataDir: string, id: string): string[] {
  const dir = path.join(dataDir, 'logs', id);
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((n) => n.endsWith('.ndjson'))
    .sort()
    .flatMap((n) => fs.readFileSync(path.join(dir, n), 'utf8').split('\n'))
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { s: string; m: string })
    .filter((l) => l.s === 'system')
    .map((l) => l.m);
}

export async function realApps({ scope, log }: BenchContext): Promise<BenchOutput> {
  if (!fs.existsSync(path.join(FIXTURE, 'package-lock.json')))
    throw new Error(`${FIXTURE} is missing: it is committed with the repository`);
  const db = await freshDatabase(scope);
  const logDir = tempDir(scope, 'logs');
  const dataDir = tempDir(scope, 'data');
  fs.chmodSync(dataDir, 0o711);
  const sandboxesDir = path.join(dataDir, 'sandboxes');
  const sandboxIds = new Set<string>();
  scope.defer('kill leftover sandbox processes', () => {
    for (const d of fs.existsSync(sandboxesDir) ? fs.readdirSync(sandboxesDir) : [])
      if (/^local-[0-9a-f]{12}$/.test(d)) sandboxIds.add(d);
    const n = killSandboxProcesses(sandboxIds);
    if (n) log(`killed ${n} leftover sandbox processes`);
  });
  const server = await startCodeRunner(scope, {
    databaseUrl: db.url,
    dataDir,
    authSecret: newAuthSecret(),
    logDir,
    env: {
      CODERUNNER_START_TIMEOUT_S: '60',
      CODERUNNER_REDEPLOY_DRAIN_S: '0',
      CODERUNNER_BUILD_SLOTS_DIR: path.join(dataDir, 'build-slots'),
    },
  });
  const isolation = ((await (await fetch(`${server.url}/readyz`)).json()) as { isolation?: string })
    .isolation;
  log(`server up at ${server.url} (isolation ${isolation}); the user is on the free plan`);
  const { token, userId } = await register(server.url, 'starter@bench.example', 'real apps bench password');
  await withPg(db.url, (c) => c.query("UPDATE users SET plan_type = 'free' WHERE id = $1", [userId]));
  const api = client(server.url, token);
  const projectId = (await api.projects.create.mutate({ name: 'express-starter' })).id;

  const work = tempDir(scope, 'app');
  fs.cpSync(FIXTURE, work, { recursive: true });
  const archive = (await packFolder(work)).archive;
  const deploy = async (what: string, archiveBytes: Uint8Array) => {
    const f = new FormData();
    f.set('projectId', projectId);
    f.set('source', new Blob([archiveBytes]), 'source.tar.gz');
    const t0 = Date.now();
    const { id } = await api.deployments.create.mutate(f);
    const seen = await waitRunning(api, id);
    const lines = systemLines(dataDir, id);
    const installed = lines.some((l) => l.startsWith('install: '));
    const reused = lines.some((l) => l.startsWith('reusing node_modules'));
    log(
      `${what}: RUNNING after ${seconds(seen - t0)} (${reused ? 'node_modules reused' : installed ? 'installed' : '?'})`,
    );
    return { ms: seen - t0, installed, reused };
  };

  const first = await deploy('first deploy', archive);
  if (!first.installed) throw new Error('the first deploy did not install');
  const again: number[] = [];
  const warm: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    const r = await deploy(`redeploy ${i + 1}/${REPEATS}, same lockfile`, archive);
    if (!r.reused) throw new Error('a redeploy with the same lockfile did not reuse node_modules');
    again.push(r.ms);
    // The lockfile's root name changed: a new cache key, the same packages (all in npm's cache).
    const lock = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'package-lock.json'), 'utf8'));
    lock.name = `express-starter-${i}`;
    fs.writeFileSync(path.join(work, 'package-lock.json'), JSON.stringify(lock, null, 2));
    const w = await deploy(
      `deploy ${i + 1}/${REPEATS}, lockfile changed (npm ci, warm npm cache)`,
      (await packFolder(work)).archive,
    );
    if (w.reused || !w.installed) throw new Error('a changed lockfile reused node_modules');
    warm.push(w.ms);
  }
  const r = ratio(median(again), first.ms);
  const line =
    `real-apps: Express starter (free plan) first deploy ${seconds(first.ms)}, redeploy ${seconds(median(again))} ` +
    `(node_modules reused), npm ci with a warm cache ${seconds(median(warm))}; redeploy / first — ratio ${r}`;
  const details = [
    `The Express starter (\`npx express-generator@4.16.1 --view=pug\`, apps/server/test/fixtures/starters/express-app, with its package-lock.json, no node_modules) deployed by a free-plan user on the local provider (isolation ${isolation}); create → RUNNING as \`deployments.watch\` reports it.`,
    '',
    '| deploy | create → RUNNING |',
    '| --- | --- |',
    `| first (nothing cached: \`npm ci\` from the registry) | ${seconds(first.ms)} |`,
    `| redeploy, same lockfile (node_modules from the build cache, no install), median of ${REPEATS} | ${seconds(median(again))} |`,
    `| lockfile changed (\`npm ci\` with npm's cache warm), median of ${REPEATS} | ${seconds(median(warm))} |`,
    '',
    `Redeploy / first: ${r} (goal ≤ 0.3); warm \`npm ci\` / first: ${ratio(median(warm), first.ms)}.`,
  ];
  return { line, details, database: db.description };
}
