/**
 * What the usage sampler costs the server: 50 running apps (each `sleep`, in a sandbox of its own),
 * sampled round after round as the server does every 10 s (one `usage()` per app: a few cgroup
 * files, or the app's process tree in /proc when unisolated). Prints each round's wall time and the
 * CPU this process spent, per round and per app, and that CPU as a share of one core at one round
 * per 10 s. Isolated where this machine allows it (as root with bubblewrap and pasta), then unisolated.
 * `node --import tsx bench/src/usage-cost.ts [apps]` (default 50). Everything it starts is removed
 * at the end, also on Ctrl-C.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { USAGE_INTERVAL_MS, UsageSampler } from '@coderunner/api';
import { createLocalProvider, findFreePort, type LocalProvider } from '@coderunner/sandbox';

const APPS = Number(process.argv[2] ?? 50);
const ROUNDS = 40;
const LIMITS = { memoryMb: 64, pids: 16, cpus: 0.1, diskMb: 16, tmpMb: 4 };

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'usage-cost-'));
fs.chmodSync(base, 0o711);
const providers: LocalProvider[] = [];

async function cleanup(): Promise<void> {
  for (const provider of providers) {
    for (const s of await provider.list().catch(() => [])) await provider.kill(s.id).catch(() => false);
  }
  fs.rmSync(base, { recursive: true, force: true });
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    console.error(`\n${signal}: removing the sandboxes…`);
    void cleanup().finally(() => process.exit(130));
  });
}

const quantile = (values: number[], q: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * q))]!;

async function measure(mode: 'auto' | 'none'): Promise<void> {
  const provider = createLocalProvider({
    rootDir: path.join(base, mode),
    isolation: mode,
    killGraceMs: 200,
    limits: () => LIMITS,
  });
  providers.push(provider);
  const isolated = provider.isolation().mode === 'sandbox';
  if (mode === 'auto' && !isolated) {
    console.log('isolation is not available here: skipping the isolated run');
    return;
  }
  const rows: { id: string; appSandboxId: string }[] = [];
  const t0 = Date.now();
  for (let i = 0; i < APPS; i++) {
    const id = `bench-${i}`;
    const sandbox = await provider.create({
      metadata: { deploymentId: id, projectId: 'bench', role: 'app' },
    });
    await sandbox.startApp({ command: 'exec sleep 3600', port: await findFreePort() });
    rows.push({ id, appSandboxId: sandbox.id });
  }
  console.log(
    `${isolated ? 'isolated' : 'unisolated'}: ${APPS} apps started in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  const sampler = new UsageSampler({ provider, running: async () => rows });
  await sampler.sample(); // connects each sandbox once, as the server's first round does
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const c0 = process.cpuUsage();
    const w0 = process.hrtime.bigint();
    await sampler.sample();
    wall.push(Number(process.hrtime.bigint() - w0) / 1e6);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  const sampled = rows.filter((r) => sampler.points(r.id, r.appSandboxId).length > ROUNDS).length;
  const cpuMedian = quantile(cpu, 0.5);
  console.log(
    `${isolated ? 'isolated' : 'unisolated'}: a round over ${APPS} apps (${sampled} sampled every round): ` +
      `wall median ${quantile(wall, 0.5).toFixed(1)} ms, p95 ${quantile(wall, 0.95).toFixed(1)} ms; ` +
      `CPU median ${cpuMedian.toFixed(1)} ms (${((cpuMedian / APPS) * 1000).toFixed(0)} µs per app), ` +
      `${((cpuMedian / USAGE_INTERVAL_MS) * 100).toFixed(3)}% of one core at one round per ${USAGE_INTERVAL_MS / 1000} s ` +
      `(${ROUNDS} rounds)`,
  );
  await sampler.stop();
  for (const { appSandboxId } of rows) await provider.kill(appSandboxId);
}

try {
  console.log(`load average ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} cores`);
  await measure('auto');
  await measure('none');
  console.log(`load average ${os.loadavg()[0]!.toFixed(1)} at the end`);
} finally {
  await cleanup();
}
