/**
 * The bounded app log: a cut never drops output the follower has not read yet (only what the app
 * writes during the cut itself may be lost), and says where the kept part now starts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { trimLog } from '../src/local/logs';

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
});
