/**
 * Bounded log files in a sandbox's logs/ folder. A file over its cap is cut to its last half behind
 * a marker line (the most recent output is what explains a failure). Logging is best effort: a full
 * disk never fails a command or an app.
 */
import fs from 'node:fs';
import { StringDecoder } from 'node:string_decoder';

export const DEFAULT_LOG_MAX_BYTES = 5 * 1024 * 1024;
const READ_CHUNK_BYTES = 256 * 1024;

/** How fast a sandbox's output is read and handed on (what this server spends on it). */
export interface OutputRate {
  bytesPerSecond: number;
  /** Read at once after a quiet spell. */
  burstBytes: number;
}
export const DEFAULT_OUTPUT_RATE: OutputRate = { bytesPerSecond: 1024 * 1024, burstBytes: 4 * 1024 * 1024 };

/**
 * A token bucket over a sandbox's output: an app or command that writes faster than
 * `bytesPerSecond` (past a burst) is read no faster, so one tenant's `yes` cannot take this
 * server's CPU, event loop and disk. Commands are slowed down (their pipes are read no faster);
 * an app's log file, which it writes itself, is read no faster and what it cannot read is skipped.
 */
export class OutputBudget {
  private tokens: number;
  private last = Date.now();

  constructor(readonly rate: OutputRate = DEFAULT_OUTPUT_RATE) {
    this.tokens = rate.burstBytes;
  }

  private refill(): void {
    const now = Date.now();
    this.tokens = Math.min(
      this.rate.burstBytes,
      this.tokens + ((now - this.last) / 1000) * this.rate.bytesPerSecond,
    );
    this.last = now;
  }

  /** Bytes that may be read now. */
  available(): number {
    this.refill();
    return Math.max(0, Math.floor(this.tokens));
  }

  take(bytes: number): void {
    this.refill();
    this.tokens -= bytes;
  }

  /** How long until the bucket is out of debt (0: it is not). */
  waitMs(): number {
    this.refill();
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.rate.bytesPerSecond) * 1000);
  }
}

/** What a reader of an app's log is told in place of output it skipped. */
export function skippedNotice(bytes: number, rate: OutputRate): string {
  const mb = (n: number) => `${(n / (1024 * 1024)).toFixed(1)} MB`;
  return `[coderunner: ${mb(bytes)} of output skipped: the app wrote more than its log is read (${mb(rate.bytesPerSecond)}/s)]\n`;
}

interface Trimmed {
  /** Offset in the old file where the kept tail began … */
  keptFrom: number;
  /** … and where it begins now (after the marker). */
  keptAt: number;
}

/**
 * Cut `file` to its last half when it is over `maxBytes`. In place (overwrite its start, then cut), not by
 * rename: an app holds its log open with O_APPEND and must keep writing into the same file. With
 * `unreadFrom` (a follower's offset), nothing is cut while the follower has not read up to the kept
 * half: output it has not read yet still reaches it. Output the app writes during the cut itself (the
 * moment between the last read and the truncate) may be lost.
 */
export async function trimLog(file: string, maxBytes: number, unreadFrom?: number): Promise<Trimmed | null> {
  const marker = Buffer.from(
    `[coderunner: earlier output removed to keep this log under ${maxBytes} bytes]\n`,
  );
  const handle = await fs.promises.open(file, 'r+');
  try {
    let { size } = await handle.stat();
    if (size <= maxBytes) return null;
    const half = Math.floor(maxBytes / 2);
    let start = size - half;
    // The follower has not read up to there yet: cut once it has (never drop unread output, and keep
    // the cut, the moment in which the app's writes may be lost, short).
    if (unreadFrom !== undefined && unreadFrom < start) return null;
    let tail = Buffer.alloc(0);
    // Read up to the end, and again if the app wrote meanwhile, so the window before the cut is short.
    for (let pass = 0; pass < 3; pass++) {
      if (size - start > maxBytes) {
        // The app wrote more than the cap meanwhile (a flood): never read all of it. With a follower
        // this cut would drop what it has not read: leave it to a later pass (or to its skip);
        // without one, keep the newest half.
        if (unreadFrom !== undefined) return null;
        start = size - half;
        tail = Buffer.alloc(0);
      }
      const more = Buffer.alloc(size - start - tail.length);
      const { bytesRead } = await handle.read(more, 0, more.length, start + tail.length);
      tail = Buffer.concat([tail, more.subarray(0, bytesRead)]);
      const now = (await handle.stat()).size;
      if (now === size) break;
      size = now;
    }
    // Start at a line boundary when there is one nearby, rather than mid-line (or mid-character).
    const newline = tail.subarray(0, Math.min(tail.length, 4096)).indexOf(10);
    const kept = tail.subarray(newline + 1);
    // Marker and kept tail written over the file's start, then the rest cut off: the file always
    // starts with the marker (the app appends at the end, never before it). What the app writes in
    // between lands past the cut and is lost, never mixed in.
    const out = Buffer.concat([marker, kept]);
    await handle.write(out, 0, out.length, 0);
    await handle.truncate(out.length);
    return { keptFrom: start + newline + 1, keptAt: marker.length };
  } finally {
    await handle.close();
  }
}

/** A log file this process writes (command output): appends in order, trims when over the cap. */
export class LogWriter {
  private queue: Promise<void> = Promise.resolve();
  /** Known size of the file, so that most writes need no stat. */
  private size: number | undefined;

  constructor(
    private readonly file: string,
    private readonly maxBytes: number,
  ) {}

  write(text: string): void {
    this.queue = this.queue
      .then(async () => {
        this.size ??= fileSize(this.file);
        await fs.promises.appendFile(this.file, text);
        this.size += Buffer.byteLength(text);
        if (this.size > this.maxBytes) {
          await trimLog(this.file, this.maxBytes);
          this.size = fileSize(this.file);
        }
      })
      .catch(() => {});
  }

  /** Resolves when everything written so far is on disk. */
  flush(): Promise<void> {
    return this.queue;
  }
}

/**
 * Follows a log file that an app writes itself (its stdout or stderr is the file, so the app keeps
 * running when the server stops): reads new output when the file changes (and on a timer), hands it
 * to `onText`, keeps the file bounded.
 */
export class LogFollower {
  private offset = 0;
  private readonly decoder = new StringDecoder('utf8');
  private timer: NodeJS.Timeout | undefined;
  private pending: Promise<void> | undefined;
  private watcher: fs.FSWatcher | undefined;
  private again = false;
  private stopped = false;
  /**
   * The file is cut (when over its cap) on the timer's reads only: a cut can lose what the app writes
   * during it, so reading on every change must not mean cutting on every change.
   */
  private trimDue = true;

  /** Whether the last text handed on ended a line (a notice then starts on a line of its own). */
  private atLineStart = true;

  constructor(
    private readonly file: string,
    private readonly maxBytes: number,
    private readonly onText?: (text: string) => void,
    /** Shared by the app's stdout and stderr; without one, everything is read. */
    private readonly budget?: OutputBudget,
  ) {}

  /**
   * Follow from the file's current end (earlier output belongs to an earlier app). New output is
   * read as soon as the file system reports a change (inotify), so a line reaches `onText` within
   * milliseconds rather than up to `intervalMs` later; the timer stays for file systems that report
   * nothing, and for the cap.
   */
  start(intervalMs: number): void {
    this.offset = fileSize(this.file);
    this.timer = setInterval(() => {
      this.trimDue = true;
      this.kick();
    }, intervalMs);
    this.timer.unref();
    if (!this.onText) return;
    try {
      this.watcher = fs.watch(this.file, { persistent: false }, () => this.kick());
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch {
      // no such file yet, or no inotify: the timer alone
    }
  }

  /** Stop following, after handing over what was written until now. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.watcher?.close();
    this.watcher = undefined;
    // A pass already under way may have read before the last write: one more pass after it, which
    // skips what the budget does not allow (a flooding app's last gigabyte is not read to the end).
    await this.pending;
    this.final = true;
    await this.poll();
    const rest = this.decoder.end();
    if (rest) this.deliver(rest);
  }

  /** Set by stop(): the last pass reads what the budget allows and skips the rest. */
  private final = false;
  /** Set by a skip: the next cut need not wait for this follower. */
  private forceCut = false;

  /** A read soon: at once if none runs, else one more right after the running one (which may have read too early). */
  private kick(): void {
    if (this.pending) {
      this.again = true;
      return;
    }
    void this.poll().then(() => {
      if (!this.again || this.stopped) return;
      this.again = false;
      this.kick();
    });
  }

  /** One pass at a time; a pass asked for while one runs waits for it. */
  poll(): Promise<void> {
    this.pending ??= this.readNew().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async readNew(): Promise<void> {
    try {
      const handle = await fs.promises.open(this.file, 'r');
      try {
        const { size } = await handle.stat();
        if (size < this.offset) this.offset = 0; // cut by someone else
        if (!this.onText) this.offset = size;
        const end = this.budget ? Math.min(size, this.offset + this.budget.available()) : size;
        const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, Math.max(0, end - this.offset)));
        while (this.offset < end) {
          const { bytesRead } = await handle.read(
            buffer,
            0,
            Math.min(buffer.length, end - this.offset),
            this.offset,
          );
          if (bytesRead === 0) break;
          this.offset += bytesRead;
          this.budget?.take(bytesRead);
          this.deliver(this.decoder.write(buffer.subarray(0, bytesRead)));
        }
        // Behind by more than the log keeps (or stopping): what is left is skipped, the reader told so,
        // and the file cut at once. Reading it all would let the app decide how much of this
        // server's time its output takes.
        const behind = size - this.offset;
        if (this.budget && behind > 0 && (this.final || behind > this.maxBytes / 2)) {
          this.offset = size;
          this.decoder.end();
          this.deliver(`${this.atLineStart ? '' : '\n'}${skippedNotice(behind, this.budget.rate)}`);
          this.trimDue = true;
          this.forceCut = true;
        }
      } finally {
        await handle.close();
      }
      // Without a reader (a keeper of an app nobody follows) every pass may cut: nothing unread is lost.
      if (!this.trimDue && this.onText) return;
      this.trimDue = false;
      // After a skip, the cut is forced: whatever the app wrote since is skipped output too.
      const force = this.forceCut || !this.onText;
      this.forceCut = false;
      const trimmed = await trimLog(this.file, this.maxBytes, force ? undefined : this.offset);
      // What was appended after our read sits in the kept tail: continue from the same point in it.
      if (trimmed) this.offset = trimmed.keptAt + Math.max(0, this.offset - trimmed.keptFrom);
    } catch {
      // The file is gone (sandbox killed) or unreadable: nothing to follow.
    }
  }

  private deliver(text: string): void {
    if (!text || !this.onText) return;
    this.atLineStart = text.endsWith('\n');
    try {
      this.onText(text);
    } catch {
      // A throwing callback must not stop the following.
    }
  }
}

function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}
