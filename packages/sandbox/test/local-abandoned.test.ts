/**
 * A server SIGKILLed while it creates a sandbox leaves its half-built folder behind: the next listing
 * (the reconciler's orphan sweep, a destroy) removes it once its creating process is gone, and leaves
 * one that a live process is still building alone.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLocalProvider } from '../src/local';
import { tempRoot } from './fixtures/local/helpers';

const root = tempRoot('cr-abandoned-');
afterAll(() => root.cleanup());

/** The pid of a process that has exited (and so names no live process now). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(child.stdout.toString());
}

describe('sandboxes whose creation was cut short', () => {
  it('are removed when their creator is gone, kept while it lives', async () => {
    const provider = createLocalProvider({ rootDir: root.rootDir });
    const live = await provider.create({ metadata: { deploymentId: 'd1', projectId: 'p1', role: 'app' } });
    const abandoned = path.join(root.rootDir, `.creating-local-0123456789ab-${deadPid()}`);
    const inProgress = path.join(root.rootDir, `.creating-local-ba9876543210-${process.pid}`);
    for (const dir of [abandoned, inProgress]) fs.mkdirSync(path.join(dir, 'app'), { recursive: true });

    const listed = await provider.list();
    expect(listed.map((s) => s.id)).toEqual([live.id]);
    expect(fs.existsSync(abandoned)).toBe(false);
    expect(fs.existsSync(inProgress)).toBe(true);
    await provider.kill(live.id);
  });
});
