/**
 * overhead: what the server's stack (Express middlewares, tRPC, superjson, zod, Sequelize models, our
 * procedures) costs on top of the work projects.list must do, measured against bare Express handlers
 * doing that work, each server in its own process, under the same load, alternating in one run.
 * Then: a CPU profile of the real server under that load, and a 10-call batch vs 10 requests.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { BenchContext, BenchOutput } from '../lib/context';
import { trpcBatchPath, trpcQueryPath } from '../lib/http';
import { type LoadResult, runLoad } from '../lib/load';
import { analyzeProfile, type FunctionCost } from '../lib/profile';
import { sleep } from '../lib/scope';
import {
  BENCH_DIR,
  freshDatabase,
  newAuthSecret,
  REPO_ROOT,
  startCodeRunner,
  startNodeService,
  tempDir,
} from '../lib/services';
import { userWithProjects } from '../lib/setup';
import { fmt, median, ms, percentile, ratio } from '../lib/stats';

const CONNECTIONS = 20;
const ROUNDS = 5;
const ROUND_S = 4;
const WARMUP_S = 2;
const BATCH = 10;
const BATCH_ROUNDS = 2;
const BATCH_ROUND_S = 4;
const PROFILE_S = 8;

interface Target {
  name: string;
  url: string;
  runs: LoadResult[];
}

function pooled(runs: LoadResult[]) {
  const latencies = runs.flatMap((r) => r.latencies);
  const ok = runs.reduce((s, r) => s + r.ok, 0);
  const secs = runs.reduce((s, r) => s + r.durationS, 0);
  return {
    rps: ok / secs,
    roundRps: runs.map((r) => r.rps),
    medianRps: median(runs.map((r) => r.rps)),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    failed: runs.reduce((s, r) => s + r.failed, 0),
  };
}

const costRow = (f: FunctionCost) =>
  `| \`${f.name}\` | ${f.where} | ${f.selfPct}% | ${f.totalPct !== undefined ? `${f.totalPct}%` : ''} |`;

export async function overhead({ scope, log }: BenchContext): Promise<BenchOutput> {
  const db = await freshDatabase(scope);
  const logDir = tempDir(scope, 'logs');
  const dataDir = tempDir(scope, 'data');
  const secret = newAuthSecret();
  const serverOpts = {
    databaseUrl: db.url,
    dataDir,
    authSecret: secret,
    logDir,
    env: { WORKER_ENABLED: 'false' },
  };
  let server = await startCodeRunner(scope, serverOpts);
  log(`server up at ${server.url} on ${db.description}`);

  const { token } = await userWithProjects(server.url, db.url, {
    email: 'overhead@bench.example',
    password: 'overhead bench password',
    plan: 'personal',
    projects: 20,
  });
  const headers = { authorization: `Bearer ${token}` };

  const baselineEnv = (pool: string) => ({
    NODE_ENV: 'production',
    DATABASE_URL: db.url,
    CODERUNNER_AUTH_SECRET: secret,
    BASELINE_POOL: pool,
  });
  const script = 'bench/src/children/baseline-server.ts';
  const [baseSeq, basePg, minimal] = await Promise.all([
    startNodeService(scope, { label: 'baseline-sequelize', script, logDir, env: baselineEnv('sequelize') }),
    startNodeService(scope, { label: 'baseline-pg', script, logDir, env: baselineEnv('pg') }),
    startNodeService(scope, {
      label: 'minimal-trpc',
      script: 'bench/src/children/minimal-trpc-server.ts',
      logDir,
      env: baselineEnv('sequelize'),
    }),
  ]);

  const listPath = trpcQueryPath('projects.list', { limit: 20 });
  const targets: Target[] = [
    { name: 'tRPC', url: `${server.url}${listPath}`, runs: [] },
    { name: 'Express+Sequelize pool', url: `${baseSeq.url}/projects`, runs: [] },
    { name: 'Express+pg.Pool', url: `${basePg.url}/projects`, runs: [] },
    { name: 'minimal tRPC', url: `${minimal.url}${listPath}`, runs: [] },
  ];

  // Same answer from all three (20 items), or the comparison means nothing.
  for (const t of targets) {
    const res = await fetch(t.url, { headers });
    const body = (await res.json()) as {
      items?: unknown[];
      result?: { data: { json: { items: unknown[] } } };
    };
    const items = body.items ?? body.result?.data.json.items;
    if (res.status !== 200 || items?.length !== 20)
      throw new Error(`${t.name} answered ${res.status} with ${items?.length} items`);
  }

  log(`warm-up ${WARMUP_S} s each`);
  for (const t of targets)
    await runLoad({ url: t.url, headers, connections: CONNECTIONS, durationS: WARMUP_S });

  for (let round = 0; round < ROUNDS; round++) {
    // Rotate the order each round so that no server always runs first or last.
    const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
    for (const t of order) {
      const r = await runLoad({ url: t.url, headers, connections: CONNECTIONS, durationS: ROUND_S });
      t.runs.push(r);
      log(`round ${round + 1}/${ROUNDS} ${t.name}: ${fmt(r.rps)} req/s, p50 ${ms(r.p50)}, p99 ${ms(r.p99)}`);
    }
  }
  const [trpc, seq, pgBase, minimalTrpc] = targets.map((t) => pooled(t.runs)) as [
    ReturnType<typeof pooled>,
    ReturnType<typeof pooled>,
    ReturnType<typeof pooled>,
    ReturnType<typeof pooled>,
  ];

  // A batch of 10 calls in one request vs 10 separate requests, same connections.
  const batchUrl = `${server.url}${trpcBatchPath('projects.list', BATCH, { limit: 20 })}`;
  const batchCheck = (await (await fetch(batchUrl, { headers })).json()) as unknown[];
  if (!Array.isArray(batchCheck) || batchCheck.length !== BATCH)
    throw new Error('the batch did not answer 10 results');
  const single: LoadResult[] = [];
  const batched: LoadResult[] = [];
  for (let round = 0; round < BATCH_ROUNDS; round++) {
    single.push(
      await runLoad({ url: targets[0]!.url, headers, connections: CONNECTIONS, durationS: BATCH_ROUND_S }),
    );
    batched.push(
      await runLoad({ url: batchUrl, headers, connections: CONNECTIONS, durationS: BATCH_ROUND_S }),
    );
    log(
      `batch round ${round + 1}/${BATCH_ROUNDS}: separate ${fmt(single.at(-1)!.rps)} calls/s, batched ${fmt(batched.at(-1)!.rps * BATCH)} calls/s`,
    );
  }
  const singleCalls = pooled(single).rps;
  const batchCalls = pooled(batched).rps * BATCH;
  const batchP50 = pooled(batched).p50;

  // CPU profile of the real server under the same load (a restart with --cpu-prof; figures not used above).
  await server.stop();
  const profDir = tempDir(scope, 'prof');
  server = await startCodeRunner(scope, {
    ...serverOpts,
    label: 'coderunner-profiled',
    nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`],
  });
  const profUrl = `${server.url}${listPath}`;
  await runLoad({ url: profUrl, headers, connections: CONNECTIONS, durationS: WARMUP_S });
  const startUs = Number(process.hrtime.bigint() / 1000n);
  const prof = await runLoad({ url: profUrl, headers, connections: CONNECTIONS, durationS: PROFILE_S });
  const endUs = Number(process.hrtime.bigint() / 1000n);
  await server.stop();
  await sleep(100);
  const profFile = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (!profFile) throw new Error('the profiled server wrote no .cpuprofile');
  // Kept for a closer look (DevTools → Performance → Load profile); *.cpuprofile is git-ignored.
  fs.mkdirSync(path.join(BENCH_DIR, 'profiles'), { recursive: true });
  const keptProfile = path.join(BENCH_DIR, 'profiles', 'overhead-server.cpuprofile');
  fs.copyFileSync(path.join(profDir, profFile), keptProfile);
  const report = analyzeProfile(keptProfile, REPO_ROOT, { startUs, endUs }, 15);
  log(
    `profiled ${PROFILE_S} s at ${fmt(prof.rps)} req/s: busy ${fmt(report.busyMs)} ms of ${fmt(report.windowMs)} ms`,
  );

  const r = ratio(trpc.rps, seq.rps);
  const line =
    `overhead: tRPC projects.list ${fmt(trpc.rps)} req/s (p50 ${ms(trpc.p50)}, p99 ${ms(trpc.p99)}), ` +
    `bare Express on the same Sequelize pool ${fmt(seq.rps)} req/s (p50 ${ms(seq.p50)}, p99 ${ms(seq.p99)}), ` +
    `minimal tRPC ${fmt(minimalTrpc.rps)} req/s (${ratio(minimalTrpc.rps, seq.rps)} of bare); ` +
    `batch of ${BATCH} ×${fmt(batchCalls / singleCalls, 2)} calls/s — ratio ${r}`;

  const details = [
    `${CONNECTIONS} connections, ${ROUNDS} rounds × ${ROUND_S} s per server, alternating (order rotated each round), after ${WARMUP_S} s warm-up each. ` +
      `A user with 20 projects; every request verifies the token, loads the user, lists the first page (20). ` +
      'Each server is its own `node --import tsx` process with NODE_ENV=production; the real server logs each request (LOG_LEVEL=info, to a file) and runs no deployment workers (WORKER_ENABLED=false).',
    '',
    '| server | req/s (all rounds) | req/s per round | p50 | p99 | failed | vs tRPC |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...(
      [
        ['CodeRunner (tRPC) `GET /trpc/projects.list`', trpc],
        ['bare Express, Sequelize pool (`connect()` of @coderunner/db, raw SQL)', seq],
        ['bare Express, pg.Pool max 10 (parameterised SQL)', pgBase],
        [
          'minimal tRPC 11 + superjson on Express, same work (`src/children/minimal-trpc-server.ts`)',
          minimalTrpc,
        ],
      ] as const
    ).map(
      ([name, p]) =>
        `| ${name} | ${fmt(p.rps)} | ${p.roundRps.map((x) => fmt(x)).join(' / ')} | ${ms(p.p50)} | ${ms(p.p99)} | ${p.failed} | ${fmt(p.rps / trpc.rps, 2)}× |`,
    ),
    '',
    `- ratio tRPC / bare Express on the same pool: **${r}**; tRPC / bare Express on pg.Pool: ${ratio(trpc.rps, pgBase.rps)}.`,
    `- calibration: the minimal tRPC endpoint / bare Express on the same pool: ${ratio(minimalTrpc.rps, seq.rps)} (what tRPC + superjson cost by themselves); CodeRunner / minimal tRPC: ${ratio(trpc.rps, minimalTrpc.rps)} (what the product adds: request logs, security headers, request ids, its middlewares).`,
    `- batch: ${BATCH} \`projects.list\` calls in one httpBatchLink request ${fmt(batchCalls)} calls/s (p50 ${ms(batchP50)} per request) vs ${fmt(singleCalls)} calls/s as separate requests: ×${fmt(batchCalls / singleCalls, 2)} (${BATCH_ROUNDS} rounds × ${BATCH_ROUND_S} s each, alternating).`,
    '',
    `### CPU profile of the server under this load`,
    '',
    `\`node --cpu-prof\`, ${PROFILE_S} s at ${fmt(prof.rps)} req/s (the profiler slows it), samples inside the load window only: the main thread was busy ${fmt((report.busyMs / report.windowMs) * 100, 1)}% of the time. Shares below are of busy time.`,
    '',
    'By package: *self* = samples in its own functions; *self + built-ins* = also the node built-ins and native code it calls (e.g. crypto, socket writes), charged to the nearest package up the stack; *inclusive* = samples with the package anywhere on the stack (synchronous stacks only).',
    '',
    '| package | self | self + built-ins | inclusive |',
    '| --- | --- | --- | --- |',
    ...report.attributed
      .slice(0, 18)
      .map(
        (c) =>
          `| ${c.category} | ${report.categories.find((x) => x.category === c.category)?.pct ?? 0}% | ${c.pct}% | ${report.inclusive.find((x) => x.category === c.category)?.pct ?? '—'}${report.inclusive.some((x) => x.category === c.category) ? '%' : ''} |`,
      ),
    '',
    'Our code (this repository, outside node_modules) by total (inclusive) time:',
    '',
    '| function | where | self | total |',
    '| --- | --- | --- | --- |',
    ...report.oursByTotal.slice(0, 12).map(costRow),
    '',
    'Our code by self time:',
    '',
    '| function | where | self | total |',
    '| --- | --- | --- | --- |',
    ...report.oursBySelf.slice(0, 10).map(costRow),
    '',
    'Top self-time functions overall:',
    '',
    '| function | where | self | package |',
    '| --- | --- | --- | --- |',
    ...report.topSelf.map((f) => `| \`${f.name}\` | ${f.where} | ${f.selfPct}% | ${f.category} |`),
  ];
  return { line, details, database: db.description };
}
