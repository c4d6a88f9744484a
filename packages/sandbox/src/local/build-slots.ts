/**
 * The build queue of one machine: at most `slots` builds (install and build) at once, whichever
 * server process runs them, so that builds, each allowed the build memory, never overcommit the
 * machine. A slot is a file `<dir>/slot-<n>` created exclusively, naming the process that holds it;
 * a build waiting for one leaves a ticket `<dir>/wait-<time>-…` so that slots go first come, first
 * served and each waiting build knows how many are ahead of it. Slots and tickets of a process that
 * is gone (a crash, SIGKILL) are taken over: what they name is checked by pid and start time.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { identify, isRunning, type ProcessIdentity } from './processes';

export const DEFAULT_BUILD_SLOTS_DIR = '/var/lib/coderunner/build-slots';
const POLL_MS = 250;

/**
 * Builds that fit this machine at once: its memory set aside for builds (`shareOfMemory` of it)
 * divided by the memory of one build, at most its CPUs, at least one.
 */
export function defaultBuildSlots(
  buildMemoryMb: number,
  shareOfMemory = 0.5,
  cpus = os.availableParallelism(),
): number {
  const byMemory = Math.floor(((os.totalmem() / 1024 / 1024) * shareOfMemory) / buildMemoryMb);
  return Math.max(1, Math.min(cpus, byMemory));
}

interface Holder extends ProcessIdentity {
  token: string;
  label: string;
}

export interface SlotWait {
  /** Builds waiting ahead of this one. */
  ahead: number;
  slots: number;
}

export class BuildSlots {
  constructor(
    private readonly dir: string,
    readonly slots: number,
  ) {}

  /**
   * Wait for a slot (`onWait` told when this build has to wait, and again whenever fewer are ahead),
   * then hold it until the returned release is called. Rejects with the signal's reason when aborted.
   */
  async acquire(opts: {
    label: string;
    signal?: AbortSignal;
    onWait?: (wait: SlotWait) => void;
  }): Promise<() => Promise<void>> {
    await fs.promises.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const me = identify(process.pid);
    const token = randomBytes(8).toString('hex');
    const holder: Holder = {
      ...(me ?? { pid: process.pid, startTime: '', bootId: '' }),
      token,
      label: opts.label,
    };
    const ticket = path.join(this.dir, `wait-${String(Date.now()).padStart(15, '0')}-${token}`);
    await fs.promises.writeFile(ticket, JSON.stringify(holder), { mode: 0o600 });
    let told: number | undefined;
    try {
      for (;;) {
        opts.signal?.throwIfAborted();
        const { ahead, free } = await this.survey(path.basename(ticket));
        if (ahead < free.length) {
          for (const slot of free) {
            if (await this.tryTake(slot, holder)) return () => this.release(slot, token);
          }
        } else if (told === undefined || ahead < told) {
          told = ahead;
          opts.onWait?.({ ahead, slots: this.slots });
        }
        await sleep(POLL_MS, opts.signal);
      }
    } finally {
      await fs.promises.rm(ticket, { force: true });
    }
  }

  /** Live tickets ahead of `mine`, and the slots free now (stale ones freed). */
  private async survey(mine: string): Promise<{ ahead: number; free: string[] }> {
    const names = await fs.promises.readdir(this.dir);
    let ahead = 0;
    for (const name of names) {
      if (!name.startsWith('wait-') || name >= mine) continue;
      if (await this.alive(name)) ahead++;
    }
    const free: string[] = [];
    for (let n = 0; n < this.slots; n++) {
      const slot = `slot-${n}`;
      if (!names.includes(slot) || !(await this.alive(slot))) free.push(slot);
    }
    return { ahead, free };
  }

  /** Whether the process a slot or ticket names still runs; a stale file is removed. */
  private async alive(name: string): Promise<boolean> {
    const file = path.join(this.dir, name);
    const text = await fs.promises.readFile(file, 'utf8').catch(() => null);
    if (text === null) return false;
    let holder: Holder | null = null;
    try {
      holder = JSON.parse(text) as Holder;
    } catch {
      // Being written (a moment): count it as held.
      return true;
    }
    if (isRunning(holder)) return true;
    // Taken over by renaming first: two processes finding it stale cannot both remove a new one.
    const stale = `${file}.stale-${randomBytes(4).toString('hex')}`;
    if (
      await fs.promises.rename(file, stale).then(
        () => true,
        () => false,
      )
    ) {
      const moved = await fs.promises.readFile(stale, 'utf8').catch(() => '');
      if (moved !== text)
        await fs.promises.rename(stale, file).catch(() => {}); // a new holder's: put back
      else await fs.promises.rm(stale, { force: true });
    }
    return false;
  }

  private async tryTake(slot: string, holder: Holder): Promise<boolean> {
    try {
      await fs.promises.writeFile(path.join(this.dir, slot), JSON.stringify(holder), {
        flag: 'wx',
        mode: 0o600,
      });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
  }

  private async release(slot: string, token: string): Promise<void> {
    const file = path.join(this.dir, slot);
    const text = await fs.promises.readFile(file, 'utf8').catch(() => '');
    if (text.includes(`"token":"${token}"`)) await fs.promises.rm(file, { force: true });
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener('abort', aborted);
      resolve();
    }
    function aborted() {
      clearTimeout(timer);
      reject(signal!.reason);
    }
    signal?.addEventListener('abort', aborted, { once: true });
  });
}
