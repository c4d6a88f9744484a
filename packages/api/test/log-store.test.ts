import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LogStore } from '../src/deployments/log-store';

const dirs: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-logs-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('deployment logs', () => {
  it('numbers lines, reads after an id, and joins chunks into whole lines', () => {
    const logs = new LogStore(tmp());
    logs.append('d1', 'system', 'info', 'first\nsecond');
    const w = logs.writer('d1', 'build', 'stdout');
    w.write('par');
    w.write('tial\nnext ');
    w.flush();
    expect(logs.read('d1', null).map((l) => [l.id, l.text])).toEqual([
      [1, 'first'],
      [2, 'second'],
      [3, 'partial'],
      [4, 'next '],
    ]);
    expect(logs.read('d1', 2).map((l) => l.id)).toEqual([3, 4]);
    expect(logs.read('d1', null, 1).map((l) => l.id)).toEqual([4]);
  });

  it('stays bounded, keeping the newest lines and increasing ids', () => {
    const logs = new LogStore(tmp(), 20_000);
    for (let i = 0; i < 2_000; i++) logs.append('d', 'app', 'stdout', `line ${i} ${'x'.repeat(40)}`);
    const lines = logs.read('d', null, 100_000);
    expect(lines.length).toBeLessThan(1_000);
    expect(lines.at(-1)!.text).toMatch(/^line 1999 /);
    expect(lines.every((l, i) => i === 0 || l.id === lines[i - 1]!.id + 1)).toBe(true);
  });

  it('follows live lines, resumes after the last id seen, and sees lines another process wrote', async () => {
    const dir = tmp();
    const writer = new LogStore(dir);
    const reader = new LogStore(dir); // stands for another process sharing the data folder
    writer.append('d', 'system', 'info', 'a\nb');
    const controller = new AbortController();
    const seen: string[] = [];
    const following = (async () => {
      for await (const line of reader.follow('d', 1, controller.signal, 50)) {
        seen.push(`${line.id}:${line.text}`);
        if (seen.length === 3) controller.abort();
      }
    })();
    await new Promise((r) => setTimeout(r, 100));
    writer.append('d', 'app', 'stdout', 'c\nd');
    await following;
    expect(seen).toEqual(['2:b', '3:c', '4:d']);
  });
});
