import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { type LogEvent, parseLogEvent } from './log-events';

export type { LogEvent } from './log-events';

/**
 * Each deployment's log (build output, app output, what the engine did and why it failed) lives in
 * the data folder as NDJSON segment files, `<dir>/<deployment id>/<first line id>.ndjson`, one line
 * per log line with a monotonically increasing id, so a follower can resume after any id and a read
 * starts at the segment holding that id. The log is bounded: past `maxBytes` whole old segments are
 * deleted (nothing is read back and rewritten).
 *
 * Writes are synchronous for the caller (ids are assigned at once) and reach the disk asynchronously,
 * off the request path. Followers of a deployment in this process share one feed: lines written here
 * go straight to it, lines another process wrote (replicas sharing the data folder) are read by the
 * feed from its last byte position when the folder changes (fs.watch) or its timer fires (for file
 * systems that report no changes), lines already seen skipped unparsed. The feed sends lines
 * in batches (one per `tickMs`), the same batch object to every follower; a follower that does not
 * keep up holds at most `maxBacklogLines` lines and then skips ahead, told how many it missed.
 * Followers come as async generators (`follow`) or as sinks the feed pushes to (`subscribe`: no task
 * or promise per follower; what the lean SSE path of deployments.logs uses). A batch that follows a
 * quiet spell goes out at once; a feed hands each batch out 100 followers at a time.
 */
export type LogSource = 'system' | 'build' | 'app';

export interface LogLine {
  id: number;
  time: Date;
  source: LogSource;
  stream: 'stdout' | 'stderr' | 'info';
  text: string;
  /** What the line means for code (system lines the engine writes; see log-events.ts). */
  event?: LogEvent;
}

/**
 * What a follower receives: consecutive lines, oldest first. `missed` counts lines that came before
 * these and were not sent (older than the bounded log keeps, or skipped because this follower read
 * too slowly); absent when nothing was missed.
 */
export interface LogBatch {
  lines: LogLine[];
  missed?: number;
  /** Set on a follow's last event: the deployment will write no more (see log-end.ts). */
  end?: LogEnd;
}

/**
 * Why a follow ended: the deployment stopped, failed or was destroyed (`status`), and when it
 * stopped because a newer deployment of its project took over, which one (`replacedBy`).
 */
export interface LogEnd {
  status: 'STOPPED' | 'FAILED' | 'DESTROYED';
  replacedBy?: string;
}

export interface LogStoreOptions {
  /** Per deployment; past it the oldest segments are deleted. */
  maxBytes?: number;
  /** Lines written within this window go out as one batch. */
  tickMs?: number;
  /** How often a feed looks for lines another process wrote if no change is reported (slowing down to 4× while it finds none). */
  pollMs?: number;
  /** A follower that has this many lines waiting drops the oldest of them. */
  maxBacklogLines?: number;
}

interface StoredLine {
  i: number;
  t: number;
  s: LogSource;
  o: LogLine['stream'];
  m: string;
  /** The line's typed event, if any (lines written before events existed have none). */
  e?: LogEvent;
}

const MAX_LINE_CHARS = 4_000;
/** A deployment's log is kept in about this many segments: deleting one drops a quarter of it. */
const SEGMENTS = 4;
const PAGE_LINES = 1_000;
/** Removed deployments remembered (ids are never reused; a late line comes within seconds). */
const REMEMBERED_REMOVALS = 10_000;
/** Followers a feed hands a batch to before letting other work run. */
const HAND_OUT_SLICE = 100;

interface Segment {
  first: number;
  bytes: number;
}

/** What this process writes for one deployment. */
interface WriteState {
  nextId: number;
  segments: Segment[];
  /** Serialized lines not yet on disk; the first one's id is `pendingFirst`. */
  pending: string[];
  pendingFirst: number;
  flushing: Promise<void> | null;
}

/** What a feed hands each batch to. */
interface Subscriber {
  push(batch: LogBatch): void;
}

/**
 * Where a pushed follower's batches go (an SSE connection): `send` returns false when the connection
 * is backed up; then nothing more is sent until `resume()` of the handle is called (on 'drain').
 */
export interface LogSink {
  send(batch: LogBatch): boolean;
}

export interface LogSubscription {
  /** The sink can take more (its connection drained). */
  resume(): void;
  close(): void;
}

/**
 * A follower whose batches are pushed to a sink as the feed sends them, with no task or promise of
 * its own: the feed's batch object itself when it follows on from the last one sent (so a sink can
 * frame it once for every follower). While the sink is backed up, or the history is still being
 * sent, batches wait here, at most `maxBacklog` lines of them: past that the oldest go, and the next
 * batch sent says how many lines were missed.
 */
class PushFollower implements Subscriber {
  private queue: LogBatch[] = [];
  private queued = 0;
  private live = false;
  private blocked = false;
  private drained: (() => void) | undefined;
  closed = false;

  constructor(
    private readonly maxBacklog: number,
    private readonly sink: LogSink,
    public last: number | null,
  ) {}

  push(batch: LogBatch): void {
    if (this.closed) return;
    if (this.live && !this.blocked && !this.queue.length) {
      this.deliver([batch]);
      return;
    }
    this.queue.push(batch);
    this.queued += batch.lines.length;
    while (this.queued > this.maxBacklog && this.queue.length > 1) {
      this.queued -= this.queue.shift()!.lines.length;
    }
  }

  /** Sends a history page; resolves once the sink can take more. */
  async sendHistory(batch: LogBatch): Promise<void> {
    if (this.closed) return;
    this.last = batch.lines.at(-1)!.id;
    if (this.sink.send(batch)) return;
    this.blocked = true;
    await new Promise<void>((resolve) => {
      this.drained = resolve;
    });
  }

  /** The history is sent: from now on batches go out as they come. */
  goLive(): void {
    this.live = true;
    this.resume();
  }

  resume(): void {
    this.blocked = false;
    const drained = this.drained;
    this.drained = undefined;
    if (drained) {
      drained(); // the history goes on
      return;
    }
    if (!this.live) return;
    while (!this.blocked && this.queue.length && !this.closed) {
      const batches = this.queue;
      this.queue = [];
      this.queued = 0;
      this.deliver(batches);
    }
  }

  close(): void {
    this.closed = true;
    this.queue = [];
    this.drained?.();
  }

  private deliver(batches: LogBatch[]): void {
    const only = batches.length === 1 ? batches[0]! : undefined;
    let lines = only ? only.lines : batches.flatMap((b) => b.lines);
    const last = this.last;
    if (last !== null && lines.length && lines[0]!.id <= last) lines = lines.filter((l) => l.id > last);
    if (!lines.length) return;
    const missed = last !== null && lines[0]!.id > last + 1 ? lines[0]!.id - last - 1 : 0;
    this.last = lines.at(-1)!.id;
    const batch = only && !missed && lines === only.lines ? only : missed ? { lines, missed } : { lines };
    if (!this.sink.send(batch)) this.blocked = true;
  }
}

class Follower implements Subscriber {
  private queue: LogBatch[] = [];
  private queued = 0;
  private wake: (() => void) | undefined;

  constructor(private readonly maxBacklog: number) {}

  push(batch: LogBatch): void {
    this.queue.push(batch);
    this.queued += batch.lines.length;
    // Bounded: the oldest batches go; the gap in ids tells the follower what it missed.
    while (this.queued > this.maxBacklog && this.queue.length > 1) {
      this.queued -= this.queue.shift()!.lines.length;
    }
    this.wake?.();
  }

  take(): LogBatch[] {
    const out = this.queue;
    this.queue = [];
    this.queued = 0;
    return out;
  }

  wait(signal: AbortSignal): Promise<void> {
    if (this.queue.length || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.wake = undefined;
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.wake = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

/** One deployment's followers in this process, and where its poll of the disk stands. */
class Feed {
  readonly followers = new Set<Subscriber>();
  private pending: LogLine[] = [];
  private tick: NodeJS.Timeout | undefined;
  private lastSent = 0;
  private handing = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private kickTimer: NodeJS.Timeout | undefined;
  private pollDelay: number;
  private polling = false;
  private again = false;
  private watcher: fs.FSWatcher | undefined;
  /** Highest id handed out: lines at or below it (re-read from disk, another replica's) are skipped. */
  lastId: number | null = null;
  /** Where the poll reads on: a segment and a byte offset in it (null: from the first segment). */
  position: { segment: number; offset: number } | null = null;
  ready: Promise<void>;
  closed = false;

  constructor(
    private readonly tickMs: number,
    private readonly pollMs: number,
    private readonly poll: (feed: Feed) => Promise<boolean>,
    init: (feed: Feed) => Promise<void>,
    private readonly folder: string,
  ) {
    this.pollDelay = pollMs;
    this.ready = init(this).then(() => void this.runPoll());
  }

  publish(lines: LogLine[]): void {
    for (const line of lines) {
      if (this.lastId !== null && line.id <= this.lastId) continue;
      this.lastId = line.id;
      this.pending.push(line);
    }
    if (!this.pending.length || this.tick) return;
    // At most one batch per tick, but a line after a quiet spell goes out at once (next turn, with the
    // lines of the same turn) rather than waiting a whole tick.
    const wait = Math.max(0, this.lastSent + this.tickMs - Date.now());
    this.tick = setTimeout(() => this.send(), wait);
  }

  private send(): void {
    this.tick = undefined;
    // A batch still being handed out: this one follows when it is done, so every follower gets them in order.
    if (this.handing) return;
    this.lastSent = Date.now();
    const batch: LogBatch = { lines: this.pending };
    this.pending = [];
    this.handing = true;
    this.handOut(batch, [...this.followers], 0);
  }

  /**
   * Hands a batch to followers a slice at a time, letting other work (API requests) run between
   * slices: writing a batch to 1,000 connections takes a while, and nothing else should wait for all
   * of it. Followers that left meanwhile are skipped; those that came meanwhile start after this batch.
   */
  private handOut(batch: LogBatch, followers: Subscriber[], from: number): void {
    const to = Math.min(followers.length, from + HAND_OUT_SLICE);
    for (let i = from; i < to; i++) if (this.followers.has(followers[i]!)) followers[i]!.push(batch);
    if (to < followers.length && !this.closed) {
      setImmediate(() => this.handOut(batch, followers, to));
      return;
    }
    this.handing = false;
    if (this.pending.length && !this.tick && !this.closed) this.tick = setTimeout(() => this.send(), 0);
  }

  /** Something changed in the folder (or the timer fired): read the disk soon, one read at a time. */
  private kick(delayMs = 5): void {
    if (this.closed) return;
    if (this.polling) {
      this.again = true;
      return;
    }
    if (this.kickTimer) return;
    this.kickTimer = setTimeout(() => void this.runPoll(), delayMs);
    this.kickTimer.unref();
  }

  private async runPoll(): Promise<void> {
    this.kickTimer = undefined;
    clearTimeout(this.pollTimer);
    this.polling = true;
    const found = await this.poll(this).catch(() => false);
    this.polling = false;
    if (this.closed) return;
    this.watch();
    // Changes are noticed at once where the file system reports them (inotify), and by this timer
    // where it does not (some network file systems); it slows down while it finds nothing.
    this.pollDelay = found || !this.watcher ? this.pollMs : Math.min(this.pollDelay * 2, this.pollMs * 4);
    if (this.again) {
      this.again = false;
      this.kick(0);
    } else {
      this.pollTimer = setTimeout(() => this.kick(0), this.pollDelay);
      this.pollTimer.unref();
    }
  }

  private watch(): void {
    if (this.watcher) return;
    try {
      this.watcher = fs.watch(this.folder, () => this.kick());
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch {
      // no folder yet (nothing written): the timer looks again
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.tick);
    clearTimeout(this.pollTimer);
    clearTimeout(this.kickTimer);
    this.watcher?.close();
  }
}

export class LogStore {
  private readonly writes = new Map<string, WriteState>();
  private readonly partial = new Map<string, string>();
  private readonly feeds = new Map<string, Feed>();
  private readonly migrated = new Set<string>();
  private readonly maxBytes: number;
  /** Deployments whose log was removed (in this process): later lines for them are dropped. */
  private readonly removed = new Set<string>();
  private readonly segmentBytes: number;
  private readonly tickMs: number;
  private readonly pollMs: number;
  private readonly maxBacklogLines: number;

  constructor(
    private readonly dir: string,
    opts: LogStoreOptions = {},
  ) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.maxBytes = opts.maxBytes ?? 2 * 1024 * 1024;
    this.segmentBytes = Math.max(1, Math.floor(this.maxBytes / SEGMENTS));
    this.tickMs = opts.tickMs ?? 50;
    this.pollMs = opts.pollMs ?? 250;
    this.maxBacklogLines = opts.maxBacklogLines ?? 2_000;
  }

  private folder(deploymentId: string): string {
    const folder = path.join(this.dir, deploymentId);
    if (!this.migrated.has(deploymentId)) {
      this.migrated.add(deploymentId);
      this.migrateSingleFile(deploymentId, folder);
    }
    return folder;
  }

  /** A log written by an earlier version (one `<id>.ndjson` file) becomes the first segment. */
  private migrateSingleFile(deploymentId: string, folder: string): void {
    const old = path.join(this.dir, `${deploymentId}.ndjson`);
    try {
      const head = fs.readFileSync(old, 'utf8').split('\n', 1)[0] ?? '';
      const first = (JSON.parse(head) as StoredLine).i;
      fs.mkdirSync(folder, { recursive: true, mode: 0o700 });
      fs.renameSync(old, segmentFile(folder, first));
    } catch {
      // no old file (the usual case), or one we cannot read: the log starts afresh
    }
  }

  private writeState(deploymentId: string): WriteState {
    let w = this.writes.get(deploymentId);
    if (w) return w;
    // Once per deployment per process: where the log on disk ends.
    const folder = this.folder(deploymentId);
    const segments: Segment[] = [];
    for (const first of listSegmentsSync(folder)) {
      let bytes = 0;
      try {
        bytes = fs.statSync(segmentFile(folder, first)).size;
      } catch {
        continue;
      }
      segments.push({ first, bytes });
    }
    const last = segments.at(-1);
    const lastId = last ? lastIdIn(segmentFile(folder, last.first), last.first - 1) : 0;
    w = { nextId: lastId + 1, segments, pending: [], pendingFirst: 0, flushing: null };
    this.writes.set(deploymentId, w);
    return w;
  }

  /** Append whole lines (text may hold several, separated by newlines); `event` goes with the first. */
  append(
    deploymentId: string,
    source: LogSource,
    stream: LogLine['stream'],
    text: string,
    event?: LogEvent,
  ): void {
    if (this.removed.has(deploymentId)) return;
    const lines = text.replace(/\r\n/g, '\n').split('\n');
    if (lines.at(-1) === '') lines.pop();
    if (!lines.length) return;
    const w = this.writeState(deploymentId);
    const written: LogLine[] = [];
    const now = Date.now();
    if (!w.pending.length) w.pendingFirst = w.nextId;
    for (const raw of lines) {
      const m = raw.length > MAX_LINE_CHARS ? `${raw.slice(0, MAX_LINE_CHARS)}…` : raw;
      const stored: StoredLine = { i: w.nextId++, t: now, s: source, o: stream, m };
      if (event && !written.length) stored.e = event;
      w.pending.push(`${JSON.stringify(stored)}\n`);
      written.push(toLine(stored));
    }
    w.flushing ??= this.flush(deploymentId, w);
    this.feeds.get(deploymentId)?.publish(written);
  }

  /** Writes what is pending, one append per round, until nothing is; at most one per deployment. */
  private async flush(deploymentId: string, w: WriteState): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve)); // gathers the lines of this turn
    const folder = this.folder(deploymentId);
    while (w.pending.length) {
      const lines = w.pending;
      let id = w.pendingFirst;
      w.pending = [];
      try {
        // One append per segment: a new one starts (named by its first id) when the last is full.
        while (lines.length) {
          let segment = w.segments.at(-1);
          if (!segment || segment.bytes >= this.segmentBytes) {
            segment = { first: id, bytes: 0 };
            w.segments.push(segment);
          }
          let data = '';
          let bytes = 0;
          while (lines.length && (bytes === 0 || segment.bytes + bytes < this.segmentBytes)) {
            const line = lines.shift()!;
            data += line;
            bytes += Buffer.byteLength(line);
            id++;
          }
          const file = segmentFile(folder, segment.first);
          await fsp.appendFile(file, data, { mode: 0o600 }).catch(async (err: NodeJS.ErrnoException) => {
            if (err.code !== 'ENOENT') throw err;
            await fsp.mkdir(folder, { recursive: true, mode: 0o700 });
            await fsp.appendFile(file, data, { mode: 0o600 });
          });
          segment.bytes += bytes;
        }
        let total = w.segments.reduce((sum, s) => sum + s.bytes, 0);
        while (total > this.maxBytes && w.segments.length > 1) {
          const old = w.segments.shift()!;
          total -= old.bytes;
          await fsp.rm(segmentFile(folder, old.first), { force: true });
        }
      } catch {
        // A full or read-only disk must not fail the deployment for want of a log line.
      }
    }
    w.flushing = null;
  }

  /** Feed a stream's chunks; complete lines are appended, a trailing partial line waits for the rest. */
  writer(
    deploymentId: string,
    source: LogSource,
    stream: 'stdout' | 'stderr',
  ): { write(chunk: string): void; flush(): void } {
    const key = `${deploymentId}:${source}:${stream}`;
    return {
      write: (chunk) => {
        const text = (this.partial.get(key) ?? '') + chunk;
        const cut = text.lastIndexOf('\n');
        if (cut === -1) {
          this.partial.set(key, text.length > MAX_LINE_CHARS ? '' : text);
          if (text.length > MAX_LINE_CHARS) this.append(deploymentId, source, stream, text);
          return;
        }
        this.partial.set(key, text.slice(cut + 1));
        this.append(deploymentId, source, stream, text.slice(0, cut));
      },
      flush: () => {
        const rest = this.partial.get(key);
        this.partial.delete(key);
        if (rest) this.append(deploymentId, source, stream, rest);
      },
    };
  }

  /** Resolves once every line appended so far in this process is on disk. */
  async settled(deploymentId?: string): Promise<void> {
    const states = deploymentId ? [this.writes.get(deploymentId)] : [...this.writes.values()];
    for (const w of states) while (w?.flushing) await w.flushing;
  }

  private async segments(deploymentId: string): Promise<number[]> {
    try {
      return parseSegmentNames(await fsp.readdir(this.folder(deploymentId)));
    } catch {
      return [];
    }
  }

  /**
   * Lines after `afterId` (all when null), at most the last `limit` of them: read from the end of the
   * newest segment backwards, as far as needed; only the lines returned are parsed.
   */
  async read(deploymentId: string, afterId: number | null, limit = PAGE_LINES): Promise<LogLine[]> {
    await this.settled(deploymentId);
    const segments = await this.segments(deploymentId);
    const folder = this.folder(deploymentId);
    let out: LogLine[] = [];
    for (let i = segments.length - 1; i >= 0 && out.length < limit; i--) {
      const file = segmentFile(folder, segments[i]!);
      const lines = await readLastLines(file, limit - out.length, afterId).catch(() => [] as LogLine[]);
      out = lines.concat(out);
      if (afterId !== null && segments[i]! <= afterId + 1) break;
    }
    return out;
  }

  /**
   * Why the deployment failed: the reason of the newest `failed` event, or null (it did not fail, or
   * its log no longer holds the line). Cheap: the line is among the last few written (nothing runs
   * after a failure), so only the end of the log is read, further back only if it is not there.
   */
  async failureReason(deploymentId: string): Promise<string | null> {
    for (const limit of [100, PAGE_LINES]) {
      const lines = await this.read(deploymentId, null, limit);
      for (let i = lines.length - 1; i >= 0; i--) {
        const event = lines[i]!.event;
        if (event?.type === 'failed') return event.reason;
      }
      if (lines.length < limit) break;
    }
    return null;
  }

  /** The first `limit` lines after `afterId`: read from the segment holding the next id on. */
  async readAfter(deploymentId: string, afterId: number, limit = PAGE_LINES): Promise<LogLine[]> {
    await this.settled(deploymentId);
    const segments = await this.segments(deploymentId);
    let start = 0;
    for (let i = 0; i < segments.length; i++) if (segments[i]! <= afterId + 1) start = i;
    const out: LogLine[] = [];
    const folder = this.folder(deploymentId);
    for (let i = start; i < segments.length && out.length < limit; i++) {
      const file = segmentFile(folder, segments[i]!);
      const { lines } = await readLinesFrom(file, 0, afterId).catch(() => ({ lines: [] as LogLine[] }));
      for (const line of lines) if (out.length < limit) out.push(line);
    }
    return out;
  }

  private feed(deploymentId: string): Feed {
    let feed = this.feeds.get(deploymentId);
    if (!feed) {
      feed = new Feed(
        this.tickMs,
        this.pollMs,
        (f) => this.pollDisk(deploymentId, f),
        async (f) => {
          // The poll starts where the disk ends now; what is written later comes from here or the poll.
          await this.settled(deploymentId);
          const segments = await this.segments(deploymentId);
          const last = segments.at(-1);
          if (last === undefined) return;
          const size = await fsp
            .stat(segmentFile(this.folder(deploymentId), last))
            .then((s) => s.size)
            .catch(() => 0);
          f.position = { segment: last, offset: size };
        },
        this.folder(deploymentId),
      );
      this.feeds.set(deploymentId, feed);
    }
    return feed;
  }

  /** Reads what was appended to the deployment's segments since the feed's position; true if any line was new. */
  private async pollDisk(deploymentId: string, feed: Feed): Promise<boolean> {
    const segments = await this.segments(deploymentId);
    if (!segments.length || feed.closed) return false;
    let { segment, offset } = feed.position ?? { segment: segments[0]!, offset: 0 };
    if (!segments.includes(segment)) {
      // Deleted (the log was bounded) while we read: go on from the next one there is.
      segment = segments.find((s) => s > segment) ?? segments.at(-1)!;
      offset = 0;
    }
    const folder = this.folder(deploymentId);
    const found: LogLine[] = [];
    for (const s of segments.filter((x) => x >= segment)) {
      const from = s === segment ? offset : 0;
      const read = await readLinesFrom(segmentFile(folder, s), from, feed.lastId).catch(() => null);
      if (!read) break;
      found.push(...read.lines);
      segment = s;
      offset = read.end;
    }
    if (feed.closed) return false;
    feed.position = { segment, offset };
    const before = feed.lastId;
    feed.publish(found);
    return feed.lastId !== before;
  }

  /**
   * Pushes batches to `sink`, as `follow` yields them (the history, then live batches), without a
   * task per follower: live batches go straight from the deployment's feed to every sink, the same
   * object to all that are up to date. A sink that reports being backed up gets nothing more until
   * `resume()`; meanwhile its batches wait, bounded (it then skips ahead, told what it missed).
   */
  subscribe(
    deploymentId: string,
    afterId: number | null,
    sink: LogSink,
    opts: { tail?: number | undefined } = {},
  ): LogSubscription {
    const feed = this.feed(deploymentId);
    const follower = new PushFollower(this.maxBacklogLines, sink, afterId);
    feed.followers.add(follower);
    const close = () => {
      if (follower.closed) return;
      follower.close();
      feed.followers.delete(follower);
      if (!feed.followers.size && this.feeds.get(deploymentId) === feed) {
        feed.close();
        this.feeds.delete(deploymentId);
      }
    };
    const history = async () => {
      await feed.ready;
      if (afterId === null) {
        const lines = await this.read(deploymentId, null, opts.tail ?? PAGE_LINES);
        for (let i = 0; i < lines.length && !follower.closed; i += PAGE_LINES)
          await follower.sendHistory({ lines: lines.slice(i, i + PAGE_LINES) });
        // An empty log: ids start at 1, so lines that come and go before we see them count as missed.
        if (!lines.length) follower.last = 0;
      } else {
        while (!follower.closed) {
          const last = follower.last!;
          const page = await this.readAfter(deploymentId, last);
          if (!page.length || follower.closed) break;
          const missed = page[0]!.id > last + 1 ? page[0]!.id - last - 1 : 0;
          await follower.sendHistory(missed ? { lines: page, missed } : { lines: page });
          if (page.length < PAGE_LINES) break;
        }
      }
      follower.goLive();
    };
    history().catch(() => follower.goLive());
    return { resume: () => follower.resume(), close };
  }

  /**
   * Batches of lines: first the history (after `afterId`, all of it paged; with no `afterId` the last
   * `tail` lines), then live batches as they come, until `signal` aborts. Batches handed to several
   * followers are the same object, so they can be serialized once.
   */
  async *follow(
    deploymentId: string,
    afterId: number | null,
    signal: AbortSignal,
    opts: { tail?: number | undefined } = {},
  ): AsyncGenerator<LogBatch> {
    const feed = this.feed(deploymentId);
    const follower = new Follower(this.maxBacklogLines);
    feed.followers.add(follower);
    try {
      await feed.ready;
      let last = afterId;
      const gap = (first: number) => (last !== null && first > last + 1 ? first - last - 1 : 0);
      if (last === null) {
        const lines = await this.read(deploymentId, null, opts.tail ?? PAGE_LINES);
        for (let i = 0; i < lines.length; i += PAGE_LINES) {
          const page = lines.slice(i, i + PAGE_LINES);
          yield { lines: page };
          last = page.at(-1)!.id;
        }
        // An empty log: ids start at 1, so lines that come and go before we see them count as missed.
        if (!lines.length) last = 0;
      } else {
        for (;;) {
          const page = await this.readAfter(deploymentId, last);
          if (!page.length || signal.aborted) break;
          const missed = gap(page[0]!.id);
          yield missed ? { lines: page, missed } : { lines: page };
          last = page.at(-1)!.id;
          if (page.length < PAGE_LINES) break;
        }
      }
      while (!signal.aborted) {
        await follower.wait(signal);
        const batches = follower.take();
        if (!batches.length) continue;
        const only = batches.length === 1 ? batches[0]! : undefined;
        const lines = batches.flatMap((b) => b.lines).filter((l) => last === null || l.id > last);
        if (!lines.length) continue;
        const missed = gap(lines[0]!.id);
        last = lines.at(-1)!.id;
        // The shared batch as it is when possible: the same object for every follower.
        if (only && !missed && lines.length === only.lines.length) yield only;
        else yield missed ? { lines, missed } : { lines };
      }
    } finally {
      feed.followers.delete(follower);
      if (!feed.followers.size && this.feeds.get(deploymentId) === feed) {
        feed.close();
        this.feeds.delete(deploymentId);
      }
    }
  }

  /** Number of deployments followed in this process (for tests and metrics). */
  get followedDeployments(): number {
    return this.feeds.size;
  }

  async remove(deploymentId: string): Promise<void> {
    // A line written after this (a build or an app ending as it is torn down) must not bring the
    // folder back: the deployment's log is gone for good.
    this.removed.add(deploymentId);
    if (this.removed.size > REMEMBERED_REMOVALS) this.removed.delete(this.removed.values().next().value!);
    const w = this.writes.get(deploymentId);
    this.writes.delete(deploymentId);
    if (w) {
      w.pending = [];
      while (w.flushing) await w.flushing;
    }
    await fsp.rm(this.folder(deploymentId), { recursive: true, force: true });
    await fsp.rm(path.join(this.dir, `${deploymentId}.ndjson`), { force: true });
  }

  /** Writes what is pending; for a graceful shutdown. */
  close(): Promise<void> {
    return this.settled();
  }
}

function segmentFile(folder: string, first: number): string {
  return path.join(folder, `${String(first).padStart(12, '0')}.ndjson`);
}

function parseSegmentNames(names: string[]): number[] {
  return names
    .filter((n) => /^\d+\.ndjson$/.test(n))
    .map((n) => Number.parseInt(n, 10))
    .sort((a, b) => a - b);
}

function listSegmentsSync(folder: string): number[] {
  try {
    return parseSegmentNames(fs.readdirSync(folder));
  } catch {
    return [];
  }
}

/** Lines whose id is at most `skipUpTo` are skipped unparsed (this process's own, read back). */
function parseLines(text: string, skipUpTo: number | null = null): LogLine[] {
  const out: LogLine[] = [];
  for (const raw of text.split('\n')) {
    if (!raw) continue;
    if (skipUpTo !== null) {
      const id = /^\{"i":(\d+),/.exec(raw)?.[1];
      if (id !== undefined && Number(id) <= skipUpTo) continue;
    }
    try {
      out.push(toLine(JSON.parse(raw) as StoredLine));
    } catch {
      // a line cut by a crash mid-write
    }
  }
  return out;
}

/** The whole lines of a file from byte `from` on, and the offset after the last of them. */
async function readLinesFrom(
  file: string,
  from: number,
  skipUpTo: number | null = null,
): Promise<{ lines: LogLine[]; end: number }> {
  const handle = await fsp.open(file, 'r');
  try {
    const { size } = await handle.stat();
    if (size <= from) return { lines: [], end: Math.min(from, size) };
    const buf = Buffer.alloc(size - from);
    const { bytesRead } = await handle.read(buf, 0, buf.length, from);
    const cut = buf.lastIndexOf(0x0a, bytesRead - 1);
    if (cut === -1) return { lines: [], end: from };
    return { lines: parseLines(buf.toString('utf8', 0, cut + 1), skipUpTo), end: from + cut + 1 };
  } finally {
    await handle.close();
  }
}

/** The last `limit` whole lines of a file with an id above `after`, read backwards in chunks. */
async function readLastLines(file: string, limit: number, after: number | null): Promise<LogLine[]> {
  if (limit <= 0) return [];
  const handle = await fsp.open(file, 'r');
  try {
    const { size } = await handle.stat();
    const chunks: Buffer[] = [];
    let start = size;
    let newlines = 0;
    // One more newline than lines wanted: the line before them ends there, so they are all whole.
    while (start > 0 && newlines <= limit) {
      const length = Math.min(64 * 1024, start);
      start -= length;
      const buf = Buffer.alloc(length);
      await handle.read(buf, 0, length, start);
      chunks.unshift(buf);
      for (let i = 0; i < length; i++) if (buf[i] === 0x0a) newlines++;
    }
    const raws = Buffer.concat(chunks).toString('utf8').split('\n');
    if (start > 0) raws.shift(); // cut in the middle
    const wanted = raws.filter(Boolean).slice(-limit);
    return parseLines(wanted.join('\n'), after);
  } finally {
    await handle.close();
  }
}

/** The id of the last whole line of a segment (read from its end), or `fallback`. */
function lastIdIn(file: string, fallback: number): number {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const size = fs.fstatSync(fd).size;
    const length = Math.min(size, 64 * 1024);
    const buf = Buffer.alloc(length);
    fs.readSync(fd, buf, 0, length, size - length);
    const lines = parseLines(buf.toString('utf8'));
    return lines.at(-1)?.id ?? fallback;
  } catch {
    return fallback;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function toLine(s: StoredLine): LogLine {
  const line: LogLine = { id: s.i, time: new Date(s.t), source: s.s, stream: s.o, text: s.m };
  const event = s.e === undefined ? undefined : parseLogEvent(s.e);
  if (event) line.event = event;
  return line;
}
