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
  it('a cut keeps everything from the follower’s offset on, however much, and says where it went', async () => {
    const file = path.join(dir, 'unread.log');
    const text = lines(0, 1000); // 100,000 bytes
    fs.writeFileSync(file, text);
    const trimmed = await trimLog(file, 16 * 1024, 20_050); // read up to mid-line 200
    const after = fs.readFileSync(file, 'utf8');
    expect(after).toMatch(/^\[coderunner: earlier output removed to keep this log under 16384 bytes\]\n/);
    expect(trimmed).not.toBeNull();
    expect(after.slice(trimmed!.keptAt)).toBe(text.slice(20_050));
    expect(trimmed!.keptFrom).toBe(20_050);
    // Without a follower behind, the last half from a line boundary.
    const plain = path.join(dir, 'plain.log');
    fs.writeFileSync(plain, text);
    const cut = await trimLog(plain, 16 * 1024);
    const kept = fs.readFileSync(plain, 'utf8').slice(cut!.keptAt);
    expect(kept.length).toBeLessThanOrEqual(8 * 1024);
    expect(text.endsWith(kept)).toBe(true);
    expect(kept.startsWith('.')).toBe(true);
  });
});
