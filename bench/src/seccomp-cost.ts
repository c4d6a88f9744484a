/**
 * What the sandboxes' seccomp filter costs, apart from everything else a deploy does (too noisy on
 * a shared machine to show it): bubblewrap running `true`, and a loop of 2 million read/write
 * system calls (dd with 1-byte blocks), each with and without the filter, runs alternating.
 * As root where isolation is available: `node --import tsx bench/src/seccomp-cost.ts`.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { detectIsolation } from '@coderunner/sandbox';

const tools = detectIsolation('sandbox').tools!;
const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'seccomp-cost-'));
const filterFile = path.join(folder, 'filter.bpf');
fs.writeFileSync(filterFile, tools.seccomp);

const BASE = ['--ro-bind', '/', '/', '--proc', '/proc', '--dev', '/dev', '--unshare-pid'];

function once(filtered: boolean, command: string[]): number {
  // bubblewrap reads the filter to its end: a descriptor of its own each run.
  const fd = filtered ? fs.openSync(filterFile, 'r') : null;
  const start = process.hrtime.bigint();
  const result = spawnSync(tools.bwrap, [...BASE, ...(fd === null ? [] : ['--seccomp', '3']), ...command], {
    stdio: ['ignore', 'ignore', 'inherit', ...(fd === null ? [] : [fd])],
  });
  const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  if (fd !== null) fs.closeSync(fd);
  if (result.status !== 0) throw new Error(`${command.join(' ')} failed (${result.status ?? result.signal})`);
  return elapsed;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

try {
  console.log(`load average ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} cores`);
  for (const [name, command, runs] of [
    ['bwrap … true', ['true'], 200],
    [
      'dd, 2M read/write calls',
      ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=1', 'count=1000000', 'status=none'],
      15,
    ],
  ] as const) {
    const off: number[] = [];
    const on: number[] = [];
    for (let i = 0; i < runs; i++) {
      off.push(once(false, [...command]));
      on.push(once(true, [...command]));
    }
    const [a, b] = [median(off), median(on)];
    console.log(
      `${name}: median ${a.toFixed(1)} ms without the filter, ${b.toFixed(1)} ms with it ` +
        `(${(b - a >= 0 ? '+' : '') + (b - a).toFixed(1)} ms, ratio ${(b / a).toFixed(2)}; ${runs} runs each, alternating)`,
    );
  }
  console.log(`load average ${os.loadavg()[0]!.toFixed(1)} at the end`);
} finally {
  fs.rmSync(folder, { recursive: true, force: true });
}
