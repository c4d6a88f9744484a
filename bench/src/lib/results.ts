/**
 * bench/RESULTS.md: a header (date, machine, command), one line per measure (`<name>: … — ratio <n>`),
 * then each measure's details. A run of some measures keeps the others' last results; results.json
 * beside it holds what RESULTS.md is rendered from.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH_DIR } from './services';

export const MEASURES = [
  'overhead',
  'argon2',
  'growth',
  'deploy',
  'logs',
  'tenant-cpu',
  'project-database',
  'db-backup',
  'real-apps',
] as const;
export type MeasureName = (typeof MEASURES)[number];

export interface MeasureResult {
  /** `<name>: … — ratio <n>` */
  line: string;
  /** Markdown lines (bullets, tables, code blocks) shown under the measure's heading. */
  details: string[];
  date: string;
  command: string;
  database: string;
  durationS: number;
  /** 1-minute load average when the measure started and ended (other work on a shared machine). */
  loadAverage?: [number, number];
}

interface Store {
  machine: string;
  lastRun: { date: string; command: string; totalS: number; measures: string[] };
  measures: Partial<Record<MeasureName, MeasureResult>>;
}

const STORE = path.join(BENCH_DIR, 'results.json');
const MARKDOWN = path.join(BENCH_DIR, 'RESULTS.md');

export function machineDescription(): string {
  let cpu = 'unknown CPU';
  try {
    cpu =
      fs
        .readFileSync('/proc/cpuinfo', 'utf8')
        .split('\n')
        .find((l) => l.startsWith('model name'))
        ?.split(':')[1]
        ?.trim() ?? cpu;
  } catch {
    cpu = os.cpus()[0]?.model ?? cpu;
  }
  const gib = (os.totalmem() / 1024 ** 3).toFixed(1);
  return `nproc ${os.availableParallelism()} · ${cpu} · ${gib} GiB RAM · Node ${process.version} · ${os.type()} ${os.release()}`;
}

function load(): Store {
  try {
    return JSON.parse(fs.readFileSync(STORE, 'utf8')) as Store;
  } catch {
    return {
      machine: machineDescription(),
      lastRun: { date: '', command: '', totalS: 0, measures: [] },
      measures: {},
    };
  }
}

export function saveResults(
  run: { date: string; command: string; totalS: number; measures: MeasureName[] },
  results: Partial<Record<MeasureName, MeasureResult>>,
): string {
  const store = load();
  store.machine = machineDescription();
  store.lastRun = run;
  Object.assign(store.measures, results);
  fs.writeFileSync(STORE, `${JSON.stringify(store, null, 2)}\n`);

  const out: string[] = [
    '# CodeRunner benchmarks',
    '',
    `- Last run: ${run.date} · \`${run.command}\` · ${run.measures.join(', ')} in ${run.totalS.toFixed(0)} s`,
    `- Machine: ${store.machine}`,
    '- Ratios compare figures measured in the same run (the machine is shared and noisy); see README.md for what each measures.',
    '',
    '## Figures',
    '',
  ];
  for (const name of MEASURES) {
    const r = store.measures[name];
    out.push(r ? r.line : `${name}: not measured yet (run \`pnpm bench ${name}\`)`);
  }
  for (const name of MEASURES) {
    const r = store.measures[name];
    if (!r) continue;
    const load = r.loadAverage
      ? ` Load average (1 min) ${r.loadAverage[0].toFixed(1)} at the start, ${r.loadAverage[1].toFixed(1)} at the end, on ${os.availableParallelism()} cores.`
      : '';
    out.push(
      '',
      `## ${name}`,
      '',
      `Measured ${r.date} by \`${r.command}\` in ${r.durationS.toFixed(0)} s on ${r.database}.${load}`,
      '',
    );
    out.push(...r.details);
  }
  fs.writeFileSync(MARKDOWN, `${out.join('\n')}\n`);
  return MARKDOWN;
}
