/**
 * `pnpm bench [overhead] [argon2] [growth] [deploy] [logs] [tenant-cpu] [project-database] [db-backup] [real-apps]`: runs the named benchmarks (all nine by default),
 * one after the other, each with its own database and servers, prints their figures and rewrites
 * bench/RESULTS.md. Everything a benchmark starts is stopped and removed even when it fails or the run
 * is interrupted.
 */
import os from 'node:os';
import path from 'node:path';
import { argon2 } from './benches/argon2';
import { dbBackup } from './benches/db-backup';
import { deploy } from './benches/deploy';
import { growth } from './benches/growth';
import { logs } from './benches/logs';
import { overhead } from './benches/overhead';
import { projectDatabase } from './benches/project-database';
import { realApps } from './benches/real-apps';
import { tenantCpu } from './benches/tenant-cpu';
import type { BenchContext, BenchOutput } from './lib/context';
import {
  MEASURES,
  type MeasureName,
  type MeasureResult,
  machineDescription,
  saveResults,
} from './lib/results';
import { closeAllScopes, Scope, withTimeout } from './lib/scope';
import { logProblems } from './lib/services';

const BENCHES: Record<MeasureName, (ctx: BenchContext) => Promise<BenchOutput>> = {
  overhead,
  argon2,
  growth,
  deploy,
  logs,
  'tenant-cpu': tenantCpu,
  'project-database': projectDatabase,
  'db-backup': dbBackup,
  'real-apps': realApps,
};
/** Per benchmark: past this it is abandoned (and cleaned up); the nine together fit in 40 minutes. */
const LIMIT_S: Record<MeasureName, number> = {
  overhead: 170,
  argon2: 170,
  growth: 140,
  deploy: 170,
  logs: 330,
  'tenant-cpu': 120,
  'project-database': 180,
  'db-backup': 180,
  'real-apps': 900,
};

const args = process.argv.slice(2).filter((a) => a !== '--');
if (args.includes('--help') || args.includes('-h')) {
  console.log(`usage: pnpm bench [${MEASURES.join('] [')}]   (default: all nine; see bench/README.md)`);
  process.exit(0);
}
const unknown = args.filter((a) => !MEASURES.includes(a as MeasureName));
if (unknown.length) {
  console.error(`unknown benchmark ${unknown.join(', ')}: choose from ${MEASURES.join(', ')}`);
  process.exit(2);
}
const selected: MeasureName[] = args.length ? MEASURES.filter((m) => args.includes(m)) : [...MEASURES];
const command = `pnpm bench${args.length ? ` ${selected.join(' ')}` : ''}`;

const runStart = Date.now();
const results: Partial<Record<MeasureName, MeasureResult>> = {};
const stamp = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
/** Rewrites RESULTS.md with the measures completed so far. */
function save(): string {
  const done = selected.filter((n) => results[n]);
  return saveResults(
    { date: stamp(), command, totalS: (Date.now() - runStart) / 1000, measures: done },
    results,
  );
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error(`\n${signal}: stopping servers and removing what the benchmarks created…`);
    void closeAllScopes()
      .then(() => {
        if (Object.keys(results).length) console.error(`kept the completed measures in ${save()}`);
      })
      .finally(() => process.exit(130));
  });
}

process.on('uncaughtException', (err) => {
  console.error('unexpected error:', err);
  interrupted = true;
  void closeAllScopes().finally(() => process.exit(1));
});

console.log(
  `${command}\nmachine: ${machineDescription()}\ndatabase: ${process.env.DATABASE_URL ? 'fresh database on DATABASE_URL' : 'embedded PostgreSQL per benchmark'}\n`,
);

let failures = 0;
for (const name of selected) {
  if (interrupted) break;
  const scope = new Scope(name);
  const started = Date.now();
  const loadBefore = os.loadavg()[0]!;
  const log = (message: string) =>
    console.log(`[${name} ${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${message}`);
  let output: BenchOutput;
  try {
    output = await withTimeout(BENCHES[name]({ scope, log }), LIMIT_S[name] * 1000, name);
  } catch (err) {
    failures++;
    if (!interrupted) {
      log(`FAILED: ${(err as Error).stack ?? err}`);
      for (const file of scope.logFiles) {
        const problems = logProblems(file);
        if (problems.length) log(`errors in ${path.basename(file)}:\n  ${problems.join('\n  ')}`);
      }
    }
    output = {
      line: `${name}: not measured — ${(err as Error).message.split('\n')[0]}`,
      details: ['```', String((err as Error).stack ?? err), '```'],
      database: '(failed run)',
    };
  } finally {
    log('cleaning up');
    await scope.close();
  }
  // Interrupted: this measure is not recorded; the signal handler exits once everything is removed.
  if (interrupted) await new Promise(() => {});
  const durationS = (Date.now() - started) / 1000;
  console.log(`\n${output.line}\n`);
  results[name] = {
    ...output,
    date: stamp(),
    command,
    durationS,
    loadAverage: [loadBefore, os.loadavg()[0]!],
  };
}

const totalS = (Date.now() - runStart) / 1000;
const file = save();
console.log(
  `\n${selected.map((n) => results[n]?.line).join('\n')}\n\ntotal ${totalS.toFixed(0)} s; written ${file}`,
);
process.exit(failures ? 1 : 0);
