import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { processAlive } from '../src/processes';

describe('processAlive', () => {
  it('a zombie is not alive: a postmaster killed after its starter died waits to be reaped', async () => {
    // The background `sleep 0` ends at once; its parent then becomes `sleep 5`, which never reaps it.
    const parent = execFile('sh', ['-c', 'sleep 0 & echo $!; exec sleep 5']);
    const pid = await new Promise<number>((resolve) =>
      parent.stdout!.once('data', (d) => resolve(Number(d))),
    );
    try {
      // Until it has exited it is alive; once it is a zombie, it is not.
      const deadline = Date.now() + 4_000;
      while (processAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(processAlive(pid)).toBe(false);
      // Still there as a zombie: signal 0 reaches it.
      expect(() => process.kill(pid, 0)).not.toThrow();
    } finally {
      parent.kill('SIGKILL');
    }
  });

  it('a running process is alive, an unused pid is not', () => {
    expect(processAlive(process.pid)).toBe(true);
    expect(processAlive(2 ** 22 + 1)).toBe(false);
  });
});
