/**
 * What `failureReason` costs deployments.list: LogStore.failureReason on 2 MB logs (the bound),
 * the failed line last (the usual case: nothing runs after a failure), behind 500 lines of output,
 * and missing (the worst case: the last 100, then the last 1,000 lines are read and parsed).
 * A list page of 20 FAILED rows reads 20 of them. `node --import tsx bench/src/failure-reason-cost.ts`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LogStore } from '@coderunner/api';

const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'failure-reason-cost-'));
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

try {
  const logs = new LogStore(folder);
  const output = Array.from({ length: 40_000 }, (_, i) => `npm warn EBADENGINE Unsupported engine ${i}`).join(
    '\n',
  );
  const cases: [string, (id: string) => void][] = [
    [
      'failed line last',
      (id) => logs.append(id, 'system', 'info', 'FAILED: x', { type: 'failed', reason: 'x' }),
    ],
    [
      'failed line, then 500 lines',
      (id) => {
        logs.append(id, 'system', 'info', 'FAILED: x', { type: 'failed', reason: 'x' });
        logs.append(id, 'app', 'stdout', Array.from({ length: 500 }, (_, i) => `after ${i}`).join('\n'));
      },
    ],
    ['no failed line (worst case)', () => {}],
  ];
  console.log(`load average ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} cores`);
  for (const [name, finish] of cases) {
    const ids = Array.from({ length: 20 }, (_, i) => `${name.replace(/\W+/g, '-')}-${i}`);
    for (const id of ids) {
      logs.append(id, 'build', 'stdout', output);
      finish(id);
    }
    await logs.settled();
    const one: number[] = [];
    const page: number[] = [];
    for (let run = 0; run < 15; run++) {
      let start = performance.now();
      await logs.failureReason(ids[0]!);
      one.push(performance.now() - start);
      start = performance.now();
      await Promise.all(ids.map((id) => logs.failureReason(id)));
      page.push(performance.now() - start);
    }
    console.log(
      `${name}: one ${median(one).toFixed(2)} ms, a page of 20 FAILED rows ${median(page).toFixed(1)} ms (medians of 15)`,
    );
  }
} finally {
  fs.rmSync(folder, { recursive: true, force: true });
}
