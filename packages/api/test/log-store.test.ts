import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type LogBatch, type LogLine, LogStore } from '../src/deployments/log-store';

const dirs: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-logs-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Follows until `until` says stop (or the signal aborts); returns every batch received. */
async function collect(
  store: LogStore,
  id: string,
  afterId: number | null,
  until: (lines: LogLine[]) => boolean,
  opts: { signal?: AbortSignal; tail?: number; onBatch?: () => void } = {},
): Promise<{ batches: LogBatch[]; lines: LogLine[] }> {
  const controller = new AbortController();
  opts.signal?.addEventListener('abort', () => controller.abort(), { once: true });
  const batches: LogBatch[] = [];
  const lines: LogLine[] = [];
  for await (const batch of store.follow(id, afterId, controller.signal, { tail: opts.tail })) {
    batches.push(batch);
    lines.push(...batch.lines);
    opts.onBatch?.();
    if (until(lines)) controller.abort();
  }
  return { batches, lines };
}

const consecutive = (lines: LogLine[]) => lines.every((l, i) => i === 0 || l.id === lines[i - 1]!.id + 1);

describe('deployment logs', () => {
  it('numbers lines, reads after an id, and joins chunks into whole lines', async () => {
    const logs = new LogStore(tmp());
    logs.append('d1', 'system', 'info', 'first\nsecond');
    const w = logs.writer('d1', 'build', 'stdout');
    w.write('par');
    w.write('tial\nnext ');
    w.flush();
    expect((await logs.read('d1', null)).map((l) => [l.id, l.text])).toEqual([
      [1, 'first'],
      [2, 'second'],
      [3, 'partial'],
      [4, 'next '],
    ]);
    expect((await logs.read('d1', 2)).map((l) => l.id)).toEqual([3, 4]);
    expect((await logs.read('d1', null, 1)).map((l) => l.id)).toEqual([4]);
    expect((await logs.readAfter('d1', 1, 2)).map((l) => l.id)).toEqual([2, 3]);
  });

  it('reads the last lines from the end of the log, across read chunks and segments', async () => {
    const logs = new LogStore(tmp(), { maxBytes: 1024 * 1024 });
    const text = (i: number) => `${i} ${'é'.repeat(1_500)}`; // 3 kB a line: a 64 kB chunk holds ~21
    for (let i = 1; i <= 200; i++) logs.append('d', 'app', 'stdout', text(i));
    for (const n of [1, 21, 22, 50, 150]) {
      const lines = await logs.read('d', null, n);
      expect(lines.map((l) => l.id)).toEqual(Array.from({ length: n }, (_, k) => 201 - n + k));
      expect(lines.every((l) => l.text === text(l.id))).toBe(true);
    }
    expect((await logs.read('d', 190, 50)).map((l) => l.id)).toEqual([
      191, 192, 193, 194, 195, 196, 197, 198, 199, 200,
    ]);
    expect((await logs.readAfter('d', 100, 3)).map((l) => l.id)).toEqual([101, 102, 103]);
  });

  it('goes on numbering after the lines another store (an earlier process) wrote', async () => {
    const dir = tmp();
    const first = new LogStore(dir);
    first.append('d', 'app', 'stdout', 'a\nb\nc');
    await first.close();
    const second = new LogStore(dir);
    second.append('d', 'app', 'stdout', 'd');
    expect((await second.read('d', null)).map((l) => `${l.id}:${l.text}`)).toEqual([
      '1:a',
      '2:b',
      '3:c',
      '4:d',
    ]);
  });

  it('stays bounded by deleting whole old segments, keeping the newest lines and increasing ids', async () => {
    const dir = tmp();
    const logs = new LogStore(dir, { maxBytes: 20_000 });
    const folder = path.join(dir, 'd');
    let oldest: { name: string; inode: number } | undefined;
    for (let i = 0; i < 2_000; i++) {
      logs.append('d', 'app', 'stdout', `line ${i} ${'x'.repeat(40)}`);
      if (i % 100 === 99) {
        await logs.settled('d');
        const names = fs.readdirSync(folder).sort();
        const name = names[0]!;
        const inode = fs.statSync(path.join(folder, name)).ino;
        // A segment still there is the same file, never read back and rewritten.
        if (oldest && names.includes(oldest.name))
          expect(fs.statSync(path.join(folder, oldest.name)).ino).toBe(oldest.inode);
        oldest = { name, inode };
        const total = names.reduce((sum, n) => sum + fs.statSync(path.join(folder, n)).size, 0);
        expect(total).toBeLessThanOrEqual(20_000);
      }
    }
    const names = fs.readdirSync(folder).sort();
    expect(names.length).toBeLessThanOrEqual(5);
    const lines = await logs.read('d', null, 100_000);
    expect(lines.length).toBeLessThan(1_000);
    expect(lines.length).toBeGreaterThan(100);
    expect(lines.at(-1)!.text).toMatch(/^line 1999 /);
    expect(consecutive(lines)).toBe(true);
    // Each segment is named by its first line's id.
    for (const name of names) {
      const firstLine = JSON.parse(fs.readFileSync(path.join(folder, name), 'utf8').split('\n')[0]!) as {
        i: number;
      };
      expect(Number.parseInt(name, 10)).toBe(firstLine.i);
    }
  });

  it('takes over a log written in the earlier single-file format', async () => {
    const dir = tmp();
    const old = [5, 6]
      .map((i) => JSON.stringify({ i, t: 0, s: 'app', o: 'stdout', m: `old ${i}` }))
      .join('\n');
    fs.writeFileSync(path.join(dir, 'd.ndjson'), `${old}\n`);
    const logs = new LogStore(dir);
    logs.append('d', 'app', 'stdout', 'new');
    expect((await logs.read('d', null)).map((l) => `${l.id}:${l.text}`)).toEqual([
      '5:old 5',
      '6:old 6',
      '7:new',
    ]);
  });

  it('stores a typed event with its line: read back, followed, and seen by another store; old lines have none', async () => {
    const dir = tmp();
    // A line written before events existed, and one with an event kind this version does not know.
    fs.mkdirSync(path.join(dir, 'd'));
    fs.writeFileSync(
      path.join(dir, 'd', '000000000001.ndjson'),
      `${JSON.stringify({ i: 1, t: 0, s: 'system', o: 'info', m: 'running at http://old/' })}\n${JSON.stringify({ i: 2, t: 0, s: 'system', o: 'info', m: 'later', e: { type: 'from-the-future' } })}\n`,
    );
    const logs = new LogStore(dir);
    const followed = collect(logs, 'd', 2, (lines) => lines.length >= 2);
    await sleep(20);
    logs.append('d', 'system', 'info', 'running at http://x/ (ready in 1.0 s)', {
      type: 'running',
      url: 'http://x/',
    });
    logs.append('d', 'system', 'info', 'building it again', { type: 'retry', n: 1, of: 2 });
    const read = await logs.read('d', null);
    expect(read.map((l) => l.event)).toEqual([
      undefined,
      undefined,
      { type: 'running', url: 'http://x/' },
      { type: 'retry', n: 1, of: 2 },
    ]);
    expect('event' in read[0]!).toBe(false); // old lines come back as they were
    expect((await followed).lines.map((l) => l.event?.type)).toEqual(['running', 'retry']);
    expect((await new LogStore(dir).read('d', 3)).map((l) => l.event)).toEqual([
      { type: 'retry', n: 1, of: 2 },
    ]);
  });

  it("failureReason: the newest failed event's reason, found past the output after it; null without one", async () => {
    const logs = new LogStore(tmp());
    expect(await logs.failureReason('none')).toBeNull();
    logs.append('d', 'system', 'info', 'FAILED: looks like a failure, but no event');
    expect(await logs.failureReason('d')).toBeNull();
    logs.append('d', 'system', 'info', 'FAILED: first', { type: 'failed', reason: 'first' });
    logs.append('d', 'system', 'info', 'FAILED: second', { type: 'failed', reason: 'second\nnpm error 404' });
    logs.append('d', 'app', 'stdout', Array.from({ length: 500 }, (_, i) => `after ${i}`).join('\n'));
    expect(await logs.failureReason('d')).toBe('second\nnpm error 404');
  });

  it('follows live lines in batches, resumes after the last id seen, and sees lines another process wrote', async () => {
    const dir = tmp();
    const writer = new LogStore(dir);
    const reader = new LogStore(dir, { pollMs: 20 }); // stands for another process sharing the data folder
    writer.append('d', 'system', 'info', 'a\nb');
    const following = collect(reader, 'd', 1, (lines) => lines.length === 3);
    await sleep(100);
    writer.append('d', 'app', 'stdout', 'c\nd');
    const { lines } = await following;
    expect(lines.map((l) => `${l.id}:${l.text}`)).toEqual(['2:b', '3:c', '4:d']);
  });

  it('followers in another process keep up while the writer deletes old segments; any gap is reported', async () => {
    const dir = tmp();
    const writer = new LogStore(dir, { maxBytes: 20_000 });
    const reader = new LogStore(dir, { maxBytes: 20_000 });
    writer.append('d', 'system', 'info', 'line 0');
    await writer.settled('d');
    const total = 2_000;
    const last = `line ${total - 1}`;
    const followers = Array.from({ length: 20 }, () =>
      collect(reader, 'd', null, (lines) => lines.at(-1)?.text === last),
    );
    await sleep(200);
    for (let i = 1; i < total; i += 10) {
      const n = Math.min(10, total - i);
      writer.append('d', 'app', 'stdout', Array.from({ length: n }, (_, k) => `line ${i + k}`).join('\n'));
      await sleep(2);
    }
    for (const { lines, batches } of await Promise.all(followers)) {
      expect(lines[0]!.text).toBe('line 0');
      expect(lines.at(-1)!.text).toBe(last);
      expect(lines.every((l, i) => i === 0 || l.id > lines[i - 1]!.id)).toBe(true);
      // Whatever was not received is accounted for by `missed`.
      const missed = batches.reduce((sum, b) => sum + (b.missed ?? 0), 0);
      expect(lines.length + missed).toBe(total);
    }
    expect(reader.followedDeployments).toBe(0);
  });

  it('hands hundreds of followers every line of a fast writer, in order, in shared batches', async () => {
    const logs = new LogStore(tmp(), { tickMs: 20 });
    logs.append('d', 'system', 'info', 'before');
    const followers = 300;
    const total = 3_000;
    let first = 0;
    const runs = Array.from({ length: followers }, () => {
      let counted = false;
      const onBatch = () => {
        if (!counted) first++;
        counted = true;
      };
      return collect(logs, 'd', null, (lines) => lines.at(-1)?.text === `line ${total - 1}`, { onBatch });
    });
    // Every follower has its history before the writer starts: what follows are live batches only.
    while (first < followers) await sleep(20);
    expect(logs.followedDeployments).toBe(1);
    for (let i = 0; i < total; i += 10) {
      logs.append('d', 'app', 'stdout', Array.from({ length: 10 }, (_, k) => `line ${i + k}`).join('\n'));
      if (i % 100 === 0) await sleep(5);
    }
    const results = await Promise.all(runs);
    for (const { lines, batches } of results) {
      expect(lines.map((l) => l.text)).toEqual([
        'before',
        ...Array.from({ length: total }, (_, i) => `line ${i}`),
      ]);
      expect(consecutive(lines)).toBe(true);
      expect(batches.some((b) => b.missed)).toBe(false);
      // Batched per tick: far fewer events than lines.
      expect(batches.length).toBeLessThan(total / 5);
    }
    // Every follower got the same batch objects for the live lines: one serialization each.
    const live = (r: { batches: LogBatch[] }) => r.batches.slice(1);
    for (const r of results.slice(1)) expect(live(r).every((b, i) => b === live(results[0]!)[i])).toBe(true);
    expect(logs.followedDeployments).toBe(0);
  });

  it('resumes by id after a dropped follow without losing or repeating a line', async () => {
    const logs = new LogStore(tmp(), { tickMs: 10 });
    let written = 0;
    const writing = (async () => {
      while (written < 2_000) {
        logs.append('d', 'app', 'stdout', `n ${written++}\nn ${written++}`);
        await sleep(1);
      }
    })();
    const seen: LogLine[] = [];
    let last: number | null = null;
    // Drop the connection every 150 lines, then follow again after the last id received.
    while (seen.at(-1)?.text !== 'n 1999') {
      const { lines } = await collect(
        logs,
        'd',
        last,
        (got) => got.length >= 150 || got.at(-1)?.text === 'n 1999',
      );
      seen.push(...lines);
      last = seen.at(-1)?.id ?? last;
    }
    await writing;
    expect(seen.map((l) => l.text)).toEqual(Array.from({ length: 2_000 }, (_, i) => `n ${i}`));
  });

  it('keeps followers going while old segments are deleted, telling a late one what it missed', async () => {
    const logs = new LogStore(tmp(), { maxBytes: 8_000, tickMs: 10, maxBacklogLines: 10_000 });
    const total = 3_000;
    const followers = Array.from({ length: 50 }, () =>
      collect(logs, 'd', null, (lines) => lines.at(-1)?.text === `line ${total - 1}`),
    );
    await sleep(100);
    for (let i = 0; i < total; i++) {
      logs.append('d', 'app', 'stdout', `line ${i}`);
      if (i % 50 === 0) await sleep(2);
    }
    for (const { lines, batches } of await Promise.all(followers)) {
      expect(lines.map((l) => l.text)).toEqual(Array.from({ length: total }, (_, i) => `line ${i}`));
      expect(batches.some((b) => b.missed)).toBe(false);
    }
    // Resuming after line 1: most of the log is gone from disk; the follower is told how much.
    const late = await collect(logs, 'd', 1, (lines) => lines.at(-1)?.text === `line ${total - 1}`);
    const firstKept = late.lines[0]!.id;
    expect(firstKept).toBeGreaterThan(100);
    expect(late.batches[0]!.missed).toBe(firstKept - 2);
    expect(consecutive(late.lines)).toBe(true);
  });

  it('bounds a follower that does not read: it skips ahead and is told how many lines it missed', async () => {
    const logs = new LogStore(tmp(), { tickMs: 5, maxBacklogLines: 300 });
    logs.append('d', 'system', 'info', 'start');
    const controller = new AbortController();
    const slow = logs.follow('d', null, controller.signal);
    expect((await slow.next()).value?.lines.map((l: LogLine) => l.text)).toEqual(['start']);
    // A brisk follower alongside: it gets everything.
    const brisk = collect(logs, 'd', null, (lines) => lines.at(-1)?.text === 'line 4999');
    // Park the slow one inside its wait, then write 5,000 lines while it does not read.
    const pending = slow.next();
    for (let i = 0; i < 5_000; i += 50) {
      logs.append('d', 'app', 'stdout', Array.from({ length: 50 }, (_, k) => `line ${i + k}`).join('\n'));
      await sleep(6); // one tick per 50 lines
    }
    await sleep(50);
    const first = (await pending).value as LogBatch; // woken by the first batch
    const second = (await slow.next()).value as LogBatch;
    // What the slow follower held was bounded: it kept at most the backlog.
    expect(second.lines.length).toBeLessThanOrEqual(300);
    expect(second.missed).toBe(5_000 - first.lines.length - second.lines.length);
    expect(second.lines.at(-1)!.text).toBe('line 4999');
    controller.abort();
    await slow.return(undefined);
    const b = await brisk;
    expect(b.lines.length).toBe(5_001);
    expect(b.batches.some((x) => x.missed)).toBe(false);
  });
});
