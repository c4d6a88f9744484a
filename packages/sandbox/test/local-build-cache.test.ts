/**
 * A project's build cache on disk: folders moved or copied between the store and a sandbox's app and
 * home folders, least recently used dropped past the cap, nothing cached through a link the code
 * planted, and never while the sandbox's code runs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalBuildCache } from '../src/local/build-cache';
import { tempRoot } from './fixtures/local/helpers';

const root = tempRoot('coderunner-build-cache-');
afterAll(() => root.cleanup());

let n = 0;
/** A fresh sandbox-like pair of folders and a cache for project `key` over one store. */
function setup(key = 'project-a', idle = () => {}) {
  n += 1;
  const app = path.join(root.base, `app-${n}`);
  const home = path.join(root.base, `home-${n}`);
  fs.mkdirSync(app);
  fs.mkdirSync(home);
  const cache = new LocalBuildCache(path.join(root.base, 'store'), key, {
    app,
    home,
    owner: undefined,
    assertIdle: idle,
  });
  return { app, home, cache };
}

function fill(dir: string, bytes: number): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'blob'), Buffer.alloc(bytes, 1));
}

describe('the build cache on disk', () => {
  it('moves tool caches out and back, copies node_modules (the store keeps its copy), and drops the least recently used past the cap', async () => {
    const first = setup();
    fill(path.join(first.home, '.npm'), 300 * 1024);
    fill(path.join(first.app, 'node_modules'), 300 * 1024);
    const folders = [
      { name: 'npm', at: 'home/.npm' },
      { name: 'node_modules-aaa', at: 'app/node_modules', keep: true },
    ];
    const saved = await first.cache.save(folders, 10);
    expect(saved.saved).toEqual(['npm', 'node_modules-aaa']);
    expect(fs.existsSync(path.join(first.home, '.npm'))).toBe(false); // moved out
    expect(fs.existsSync(path.join(first.app, 'node_modules', 'blob'))).toBe(true); // copied

    const second = setup();
    expect(await second.cache.restore(folders)).toEqual(['npm', 'node_modules-aaa']);
    expect(fs.statSync(path.join(second.app, 'node_modules', 'blob')).size).toBe(300 * 1024);
    expect((await second.cache.names()).sort()).toEqual(['node_modules-aaa']); // npm is in the sandbox now

    // A new lockfile's node_modules, 1 MB cap: the oldest (aaa) goes first, then as much as needed.
    await new Promise((resolve) => setTimeout(resolve, 20));
    fs.rmSync(path.join(second.app, 'node_modules'), { recursive: true });
    fill(path.join(second.app, 'node_modules'), 600 * 1024);
    const result = await second.cache.save(
      [
        { name: 'npm', at: 'home/.npm' },
        { name: 'node_modules-bbb', at: 'app/node_modules', keep: true },
      ],
      1,
    );
    expect(result.evicted).toEqual(['node_modules-aaa']);
    expect((await second.cache.names()).sort()).toEqual(['node_modules-bbb', 'npm']);
    expect(result.bytes).toBeLessThanOrEqual(1024 * 1024);
  });

  it("another project's key sees nothing; drop forgets everything", async () => {
    const other = setup('project-b');
    expect(await other.cache.restore([{ name: 'npm', at: 'home/.npm' }])).toEqual([]);
    expect(await other.cache.names()).toEqual([]);
    const mine = setup('project-a');
    await mine.cache.drop();
    expect(await mine.cache.names()).toEqual([]);
  });

  it('caches nothing through a link the code planted, and refuses while its code runs', async () => {
    const { app, cache } = setup('project-c');
    const outside = path.join(root.base, 'outside');
    fill(path.join(outside, 'cache'), 1024);
    fs.symlinkSync(outside, path.join(app, '.next'));
    const saved = await cache.save([{ name: 'next-cache', at: 'app/.next/cache' }], 10);
    expect(saved.saved).toEqual([]);
    expect(fs.existsSync(path.join(outside, 'cache', 'blob'))).toBe(true); // not taken
    fs.mkdirSync(path.join(app, 'node_modules'));
    fs.symlinkSync('/etc', path.join(app, 'node_modules', 'linked'));
    await cache.save([{ name: 'node_modules-l', at: 'app/node_modules', keep: true }], 10);
    expect(
      fs.lstatSync(path.join(root.base, 'store', 'project-c', 'node_modules-l', 'linked')).isSymbolicLink(),
    ).toBe(true); // copied as a link, never followed

    const busy = setup('project-c', () => {
      throw new Error('sandbox runs processes');
    });
    await expect(busy.cache.restore([{ name: 'node_modules-l', at: 'app/node_modules' }])).rejects.toThrow(
      'sandbox runs processes',
    );
    expect(() => setup('../escape')).toThrow('build cache key');
  });
});
