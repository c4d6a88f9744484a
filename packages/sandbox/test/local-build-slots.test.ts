/**
 * The machine's build queue: slot files shared by every server process, first come first served,
 * each waiting build told how many are ahead, and the slot of a process that died taken over.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BuildSlots, defaultBuildSlots, type SlotWait } from '../src/local/build-slots';
import { identify } from '../src/local/processes';
import { tempRoot } from './fixtures/local/helpers';

const root = tempRoot('coderunner-build-slots-');
afterAll(() => root.cleanup());

describe('build slots', () => {
  it('with one slot, later builds wait in order, each told how many are ahead', async () => {
    const slots = new BuildSlots(path.join(root.base, 'one'), 1);
    const order: string[] = [];
    const waits: Record<string, SlotWait[]> = { b: [], c: [] };
    const releaseA = await slots.acquire({ label: 'a' });
    const b = slots.acquire({ label: 'b', onWait: (w) => waits.b!.push(w) }).then((release) => {
      order.push('b');
      return release;
    });
    await new Promise((resolve) => setTimeout(resolve, 50)); // b's ticket is older than c's
    const c = slots.acquire({ label: 'c', onWait: (w) => waits.c!.push(w) }).then((release) => {
      order.push('c');
      return release;
    });
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(order).toEqual([]);
    expect(waits.b).toEqual([{ ahead: 0, slots: 1 }]);
    expect(waits.c).toEqual([{ ahead: 1, slots: 1 }]);
    await releaseA();
    const releaseB = await b;
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(order).toEqual(['b']);
    expect(waits.c).toEqual([
      { ahead: 1, slots: 1 },
      { ahead: 0, slots: 1 },
    ]);
    await releaseB();
    await (await c)();
    expect(order).toEqual(['b', 'c']);
    expect(fs.readdirSync(path.join(root.base, 'one'))).toEqual([]);
  });

  it("a slot held by a process that is gone is taken over; a live one's is not", async () => {
    const dir = path.join(root.base, 'stale');
    fs.mkdirSync(dir, { recursive: true });
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    await new Promise((resolve) => child.once('spawn', resolve));
    const holder = { ...identify(child.pid!)!, token: 'dead', label: 'crashed server' };
    fs.writeFileSync(path.join(dir, 'slot-0'), JSON.stringify(holder));
    const slots = new BuildSlots(dir, 1);
    const abort = new AbortController();
    const waiting = slots.acquire({ label: 'x', signal: abort.signal });
    await new Promise((resolve) => setTimeout(resolve, 400));
    abort.abort(new Error('given up'));
    await expect(waiting).rejects.toThrow('given up');
    expect(fs.readdirSync(dir)).toEqual(['slot-0']); // its ticket gone, the live holder's slot kept
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const release = await slots.acquire({ label: 'y' });
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'slot-0'), 'utf8')).label).toBe('y');
    await release();
  });

  it('slots by default: half the memory over the build memory, at most the CPUs, at least one', () => {
    expect(defaultBuildSlots(2048, 0.5, 64)).toBeGreaterThanOrEqual(1);
    expect(defaultBuildSlots(2048, 0.5, 2)).toBeLessThanOrEqual(2);
    expect(defaultBuildSlots(10 ** 9, 0.5, 8)).toBe(1);
  });
});
