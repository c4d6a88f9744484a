/**
 * Sandbox uids: one per sandbox, never handed out again while a folder that may hold its files or a
 * process running as it exists (real files, real processes; the process part needs root).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseUidRange, UidAllocator } from '../src/local/uids';
import { isRoot, tempRoot } from './fixtures/local/helpers';

const root = tempRoot('coderunner-uids-');
afterAll(() => root.cleanup());

describe('sandbox uid claims', () => {
  it('a one-uid range hands its uid to one sandbox at a time, and again once released', async () => {
    const claims = path.join(root.base, 'claims-1');
    const uids = new UidAllocator({ first: 3_999_001, count: 1 }, claims);
    const uid = await uids.claim(path.join(root.base, 'a'));
    expect(uid).toBe(3_999_001);
    fs.mkdirSync(path.join(root.base, 'a'));
    await expect(uids.claim(path.join(root.base, 'b'))).rejects.toThrow(/no free sandbox uid/);
    // Its folder moved to the trash: the claim follows it, and still holds.
    await uids.addPath(uid, path.join(root.base, 'trash-a'));
    fs.renameSync(path.join(root.base, 'a'), path.join(root.base, 'trash-a'));
    await expect(uids.claim(path.join(root.base, 'b'))).rejects.toThrow(/no free sandbox uid/);
    await uids.release(uid);
    expect(await uids.claim(path.join(root.base, 'b'))).toBe(uid);
  });

  it('a claim left by a crash is taken over only when none of its folders exists', async () => {
    const claims = path.join(root.base, 'claims-2');
    const first = new UidAllocator({ first: 3_999_002, count: 1 }, claims);
    await first.claim(path.join(root.base, 'crashed'));
    // No folder "crashed" exists and nothing runs as the uid: a new server may take it.
    const second = new UidAllocator({ first: 3_999_002, count: 1 }, claims);
    expect(await second.claim(path.join(root.base, 'c'))).toBe(3_999_002);
    fs.mkdirSync(path.join(root.base, 'c'));
    await expect(new UidAllocator({ first: 3_999_002, count: 1 }, claims).claim('/x')).rejects.toThrow(
      /no free sandbox uid/,
    );
  });

  it.skipIf(!isRoot)('nor while a process runs as that uid', async () => {
    const claims = path.join(root.base, 'claims-3');
    const uids = new UidAllocator({ first: 3_999_003, count: 1 }, claims);
    await uids.claim(path.join(root.base, 'gone'));
    const survivor = spawn('sleep', ['30'], { uid: 3_999_003, gid: 3_999_003, stdio: 'ignore' });
    await new Promise((resolve) => survivor.once('spawn', resolve));
    try {
      await expect(uids.claim(path.join(root.base, 'd'))).rejects.toThrow(/no free sandbox uid/);
    } finally {
      survivor.kill('SIGKILL');
      await new Promise((resolve) => survivor.once('exit', resolve));
    }
    expect(await uids.claim(path.join(root.base, 'd'))).toBe(3_999_003);
  });

  it('parses FIRST-LAST ranges and refuses others', () => {
    expect(parseUidRange('3000000-3099999')).toEqual({ first: 3_000_000, count: 100_000 });
    expect(() => parseUidRange('0-10')).toThrow(/FIRST at least 1000/);
    expect(() => parseUidRange('5000-4000')).toThrow(/not valid/);
    expect(() => parseUidRange('abc')).toThrow(/not valid/);
  });
});
