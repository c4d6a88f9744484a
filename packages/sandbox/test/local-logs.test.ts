/**
 * The bounded app log: a cut never drops output the follower has not read yet (only what the app
 * writes during the cut itself may be lost), and says where the kept part now starts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LogFollower, OutputBudget, trimLog } from '../src/local/logs';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-logs-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const lines = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => `${String(from + i).padStart(99, '.')}\n`).join('');

describe('bounded app logs', () => {
  it('a cut waits for the follower to read up to the kept half, and says where the kept part went', async () => {
    const file = path.join(dir, 'unread.log');
    const text = lines(0, 1000); // 100,000 bytes
    fs.writeFileSync(file, text);
    // The follower is behind the half a cut would keep: nothing is cut yet.
    expect(await trimLog(file, 16 * 1024, 20_050)).toBeNull();
    expect(fs.readFileSync(file, 'utf8')).toBe(text);
    // It has read up to the end: the last half is kept, from a line boundary, behind the marker.
    const trimmed = await trimLog(file, 16 * 1024, text.length);
    const after = fs.readFileSync(file, 'utf8');
    expect(after).toMatch(/^\[coderunner: earlier output removed to keep this log under 16384 bytes\]\n/);
    const kept = after.slice(trimmed!.keptAt);
    expect(kept.length).toBeLessThanOrEqual(8 * 1024);
    expect(text.slice(trimmed!.keptFrom)).toBe(kept);
    expect(kept.startsWith('.')).toBe(true);
  });

  it('a follower reads no faster than its budget: the rest is skipped, said, and cut from the file', async () => {
    const file = path.join(dir, 'flood.log');
    fs.writeFileSync(file, '');
    let received = '';
    const budget = new OutputBudget({ bytesPerSecond: 64 * 1024, burstBytes: 128 * 1024 });
    const follower = new LogFollower(
      file,
      256 * 1024,
      (text) => {
        received += text;
      },
      budget,
    );
    follower.start(60_000); // the cut comes from the skip, not from the timer
    fs.appendFileSync(file, lines(0, 20_000)); // 2 MB at once: far over what the budget reads
    await follower.poll();
    // The burst (cut mid-line), then on a line of its own what was skipped; the file is cut at once.
    const burst = lines(0, 20_000).slice(0, 128 * 1024);
    expect(received.slice(0, burst.length + 1)).toBe(`${burst}\n`);
    expect(received.slice(burst.length + 1)).toMatch(
      /^\[coderunner: 1\.\d MB of output skipped: the app wrote more than its log is read \(0\.1 MB\/s\)\]\n$/,
    );
    expect(fs.statSync(file).size).toBeLessThanOrEqual(256 * 1024);
    fs.appendFileSync(file, 'after the flood\n');
    await new Promise((r) => setTimeout(r, 100)); // 6.4 KB of budget back
    await follower.stop();
    expect(received.endsWith('after the flood\n')).toBe(true);
  });

  it('a log nobody follows is cut on every pass, not only the first', async () => {
    const file = path.join(dir, 'kept.log');
    fs.writeFileSync(file, lines(0, 1000));
    const keeper = new LogFollower(file, 16 * 1024);
    await keeper.poll();
    expect(fs.statSync(file).size).toBeLessThanOrEqual(16 * 1024);
    fs.appendFileSync(file, lines(1000, 2000));
    await keeper.poll();
    expect(fs.statSync(file).size).toBeLessThanOrEqual(16 * 1024);
  });
});
