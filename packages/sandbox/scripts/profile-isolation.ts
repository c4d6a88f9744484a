/**
 * Where the time of one deploy goes on the local provider, isolated vs not: create, writeFiles,
 * startApp, until the app listens, until the host reaches it (waitUntilReady), kill.
 * Run as root: `node --import tsx packages/sandbox/scripts/profile-isolation.ts [rounds]`; see
 * bench/isolation-profile.md.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// PROFILE_SRC: another copy of src/ (e.g. an earlier commit's, extracted next to it) to compare.
const src = process.env.PROFILE_SRC ?? '../src';
const { createLocalProvider, findFreePort } = (await import(
  `${src}/local/index.ts`
)) as typeof import('../src/local');
const { SandboxCgroup } = (await import(`${src}/local/cgroups.ts`)) as typeof import('../src/local/cgroups');
const { LocalSandbox } = (await import(`${src}/local/sandbox.ts`)) as typeof import('../src/local/sandbox');
const { UidAllocator } = (await import(`${src}/local/uids.ts`)) as typeof import('../src/local/uids');

/** Time spent in these methods (private ones included), per round. */
const inner: Record<string, number> = {};
function wrap(proto: object, name: string, label: string): void {
  const target = proto as Record<string, (...args: unknown[]) => unknown>;
  const original = target[name]!;
  target[name] = function (this: unknown, ...args: unknown[]) {
    const t = performance.now();
    const result = original.apply(this, args);
    const done = () => {
      inner[label] = (inner[label] ?? 0) + performance.now() - t;
    };
    if (result instanceof Promise) return result.finally(done);
    done();
    return result;
  };
}
// Earlier versions: ensureOutbound (pasta before the app), startInbound (a second pasta once it listens).
for (const [name, label] of [
  ['ensureOutbound', 'startApp: ensureOutbound (pasta out, before spawning)'],
  ['stopInbound', 'startApp: stopInbound'],
  ['startInbound', 'ready: startInbound (pasta in, once listening)'],
  ['ensureNetwork', 'startApp: ensureNetwork (pasta, while bwrap starts)'],
] as const)
  if (name in LocalSandbox.prototype) wrap(LocalSandbox.prototype, name, label);
wrap(LocalSandbox.prototype, 'spawnProcess', 'spawnProcess (sync part)');
wrap(SandboxCgroup.prototype, 'create', 'create: cgroup.create');
wrap(SandboxCgroup.prototype, 'leaf', 'cgroup.leaf');
// PROFILE_SKIP_CGROUP=cpu|memory|pids: isolated processes do not join that hierarchy (to see its cost).
if (process.env.PROFILE_SKIP_CGROUP) {
  const leaf = SandboxCgroup.prototype.leaf;
  SandboxCgroup.prototype.leaf = function (this: InstanceType<typeof SandboxCgroup>, name: string) {
    return leaf.call(this, name).filter((f: string) => !f.includes(`/${process.env.PROFILE_SKIP_CGROUP}/`));
  };
}
wrap(SandboxCgroup.prototype, 'kill', 'cgroup.kill');
wrap(UidAllocator.prototype, 'claim', 'create: uid claim');

const rounds = Number(process.argv[2] ?? 8);
const files = [
  {
    path: 'package.json',
    data: JSON.stringify({ name: 'hello', version: '1.0.0', scripts: { start: 'node server.js' } }),
  },
  {
    path: 'server.js',
    data: `console.log('boot ' + Date.now());
require('http').createServer((req, res) => res.end('hello')).listen(process.env.PORT, '127.0.0.1', () => console.log('listening ' + Date.now()));`,
  },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** One deploy-like round per call: create, write, start, wait until ready, kill. */
function profiler(mode: 'sandbox' | 'none') {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-prof-'));
  fs.chmodSync(base, 0o711);
  const provider = createLocalProvider({
    rootDir: path.join(base, 'sandboxes'),
    isolation: mode,
    databasePorts: () => [5432],
    limits: () => ({ memoryMb: 1024, pids: 512, cpus: 2, diskMb: 1024, tmpMb: 64 }),
  });
  const steps: Record<string, number[]> = {};
  const add = (k: string, v: number) => {
    steps[k] = [...(steps[k] ?? []), v];
  };
  const round = async (i: number) => {
    let t = performance.now();
    const lap = (k: string) => {
      const now = performance.now();
      if (i > 0) add(k, now - t);
      t = now;
    };
    const t0 = t;
    for (const k of Object.keys(inner)) delete inner[k];
    const sandbox = await provider.create({
      metadata: { deploymentId: `d${i}`, projectId: 'p', role: 'app' },
      envs: { DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/db' },
    });
    lap('create');
    // As the engine does: the port is chosen, and the sandbox told, before the files are written.
    const port = await findFreePort();
    const envs = { DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/db' };
    sandbox.prepareApp?.({ port, envs }).catch(() => {});
    lap('port + prepareApp');
    await sandbox.writeFiles(files);
    lap('writeFiles');
    let listening = 0;
    let boot = 0;
    const startCalled = Date.now();
    const app = await sandbox.startApp({
      command: 'npm start',
      port,
      envs,
      onStdout: (c) => {
        const m = /listening (\d+)/.exec(c);
        if (m) listening = Number(m[1]);
        const b = /boot (\d+)/.exec(c);
        if (b) boot = Number(b[1]);
      },
    });
    lap('startApp');
    const started = Date.now();
    await sandbox.waitUntilReady(app, { timeoutMs: 20_000 });
    const ready = Date.now();
    lap('waitUntilReady');
    if (i > 0) add('total', performance.now() - t0);
    if (i > 0) for (const [k, v] of Object.entries(inner)) add(`  ${k}`, v);
    // listening stamp arrives via the log follower (200 ms polls): wait for it.
    for (let w = 0; w < 50 && !listening; w++) await new Promise((r) => setTimeout(r, 20));
    if (i > 0 && listening) {
      add('  startApp returned → app listening', listening - started);
      add('    startApp returned → app boot (npm start, node)', boot - started);
      add('    startApp called → app boot', boot - startCalled);
      add('  app listening → ready', ready - listening);
    }
    t = performance.now();
    await sandbox.kill();
    lap('kill');
  };
  return { steps, round, cleanup: () => fs.rmSync(base, { recursive: true, force: true }) };
}

// Interleaved (one isolated round, then one unisolated), so that load from elsewhere hits both alike.
const isolated = profiler('sandbox');
const unisolated = profiler('none');
for (let i = 0; i < rounds + 1; i++) {
  await isolated.round(i);
  await unisolated.round(i);
}
isolated.cleanup();
unisolated.cleanup();
const on = isolated.steps;
const off = unisolated.steps;
console.log(`load ${os.loadavg()[0]!.toFixed(2)} at the end; median of ${rounds} (after one warm-up), ms`);
console.log('step'.padEnd(40), 'isolated'.padStart(9), 'none'.padStart(9));
for (const k of Object.keys(on))
  console.log(
    k.padEnd(40),
    median(on[k]!).toFixed(1).padStart(9),
    (off[k] ? median(off[k]!).toFixed(1) : '-').padStart(9),
  );
