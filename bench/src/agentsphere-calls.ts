/**
 * What one RUNNING deployment on AgentSphere costs in calls to the service's REST API, in steady state,
 * per server replica and minute, measured against the local fake through the unmodified SDK:
 *
 * - before: the reconciler's pass as it was (every 15 s): `getInfo` then the SDK's `Sandbox.connect`
 *   (which reads the same info again), envd's process list, and a keep-alive;
 * - after, on the replica that runs the app: the same pass through the provider (connect reused for
 *   60 s; no keep-alive, the engine's keeper extends the sandbox every third of its 5-minute timeout);
 * - after, on another replica (it does not hold the sandbox): the pass with its own keep-alive.
 *
 * One simulated minute = 4 passes (CODERUNNER_RECONCILE_INTERVAL_S = 15) and 0.6 keeper keep-alives
 * (60 s / 100 s), counted as the fake records them. `node --import tsx bench/src/agentsphere-calls.ts`.
 */
import { createRequire } from 'node:module';
import { createAgentSphereProvider } from '../../packages/sandbox/src/agentsphere';
import type { SandboxClass } from '../../packages/sandbox/src/agentsphere/client';
import { FakeAgentSphere, installFetchRouter } from '../../packages/sandbox/test/fake-agentsphere';

// The SDK the provider uses (a dependency of packages/sandbox, not of bench).
const { Sandbox } = createRequire(new URL('../../packages/sandbox/package.json', import.meta.url))(
  'agentsphere-sandbox-base',
) as { Sandbox: SandboxClass };

const API_KEY = 'as_bench_calls';
const DOMAIN = 'calls.bench';
const PASSES_PER_MINUTE = 4;
const KEEPER_PER_MINUTE = 60 / 100;
const MINUTES = 5;

const fake = await FakeAgentSphere.start({ apiKey: API_KEY, domain: DOMAIN });
const restore = installFetchRouter(fake);
try {
  const options = { apiKey: API_KEY, domain: DOMAIN, templates: { default: 'base' } };
  const provider = createAgentSphereProvider(options);
  const sandbox = await provider.create({ metadata: { deploymentId: 'd', projectId: 'p', role: 'app' } });
  await sandbox.startApp({ command: 'sleep 600', port: 8080 });
  const connection = { apiKey: API_KEY, domain: DOMAIN, requestTimeoutMs: 30_000 };
  const rest = () => fake.calls.filter((c) => c.target === 'api').length;

  const measure = async (pass: (minute: number) => Promise<void>, keeper: boolean) => {
    const start = rest();
    for (let i = 0; i < MINUTES * PASSES_PER_MINUTE; i++) await pass(Math.floor(i / PASSES_PER_MINUTE));
    const keepAlives = keeper ? Math.round(MINUTES * KEEPER_PER_MINUTE) : 0;
    for (let i = 0; i < keepAlives; i++) await sandbox.keepAlive(300_000);
    return (rest() - start) / MINUTES;
  };

  const before = await measure(async () => {
    await Sandbox.getInfo(sandbox.id, connection);
    const sdk = await Sandbox.connect(sandbox.id, connection);
    await sdk.commands.list();
    await Sandbox.setTimeout(sandbox.id, 300_000, connection);
  }, false);
  // The passes run back to back, not 15 s apart: a new provider each simulated minute stands for the
  // connect cache (60 s) running out once a minute.
  const perMinute = Array.from({ length: MINUTES }, () => createAgentSphereProvider(options));
  const afterOwner = await measure(async (minute) => {
    await (await perMinute[minute]!.connect(sandbox.id)).isAppRunning();
  }, true);
  const others = Array.from({ length: MINUTES }, () => createAgentSphereProvider(options));
  const afterOther = await measure(async (minute) => {
    const s = await others[minute]!.connect(sandbox.id);
    await s.isAppRunning();
    await s.keepAlive(300_000);
  }, false);
  console.log('REST calls per RUNNING deployment per replica per minute (steady state, against the fake):');
  console.log(`  before (getInfo + SDK connect + keep-alive each 15 s pass): ${before.toFixed(1)}`);
  console.log(`  after, the replica running the app (connect reused, keeper): ${afterOwner.toFixed(1)}`);
  console.log(`  after, another replica (connect reused, keep-alive per pass): ${afterOther.toFixed(1)}`);
  await sandbox.kill();
} finally {
  restore();
  await fake.stop();
}
