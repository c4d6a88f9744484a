import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Each deployment's log (build output, app output, what the engine did and why it failed) lives in
 * the data folder as NDJSON, one line per log line with a monotonically increasing id, so a follower
 * can resume after any id. The file is bounded: past `maxBytes` the oldest half is dropped.
 *
 * Followers in this process are woken by an emitter; followers in another process sharing the data
 * folder (a worker-only process) poll the file.
 */
export type LogSource = 'system' | 'build' | 'app';

export interface LogLine {
  id: number;
  time: Date;
  source: LogSource;
  stream: 'stdout' | 'stderr' | 'info';
  text: string;
}

interface StoredLine {
  i: number;
  t: number;
  s: LogSource;
  o: LogLine['stream'];
  m: string;
}

const MAX_LINE_CHARS = 4_000;

export class LogStore {
  private readonly emitter = new EventEmitter();
  private readonly nextIds = new Map<string, number>();
  private readonly partial = new Map<string, string>();

  constructor(
    private readonly dir: string,
    private readonly maxBytes = 2 * 1024 * 1024,
  ) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.emitter.setMaxListeners(0);
  }

  private file(deploymentId: string): string {
    return path.join(this.dir, `${deploymentId}.ndjson`);
  }

  private nextId(deploymentId: string): number {
    let next = this.nextIds.get(deploymentId);
    if (next === undefined) {
      const last = this.readAll(deploymentId).at(-1);
      next = last ? last.id + 1 : 1;
    }
    this.nextIds.set(deploymentId, next + 1);
    return next;
  }

  /** Append whole lines (text may hold several, separated by newlines). */
  append(deploymentId: string, source: LogSource, stream: LogLine['stream'], text: string): void {
    const lines = text.replace(/\r\n/g, '\n').split('\n');
    if (lines.at(-1) === '') lines.pop();
    if (!lines.length) return;
    const written: LogLine[] = [];
    let out = '';
    for (const raw of lines) {
      const m = raw.length > MAX_LINE_CHARS ? `${raw.slice(0, MAX_LINE_CHARS)}…` : raw;
      const stored: StoredLine = { i: this.nextId(deploymentId), t: Date.now(), s: source, o: stream, m };
      out += `${JSON.stringify(stored)}\n`;
      written.push(toLine(stored));
    }
    const file = this.file(deploymentId);
    try {
      fs.appendFileSync(file, out, { mode: 0o600 });
      if (fs.statSync(file).size > this.maxBytes) this.truncate(file);
    } catch {
      // A full or read-only disk must not fail the deployment for want of a log line.
    }
    for (const line of written) this.emitter.emit(deploymentId, line);
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

  private truncate(file: string): void {
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
    const keep = lines.slice(Math.floor(lines.length / 2));
    const tmp = `${file}.tmp`;
    fs.writeFileSync(tmp, `${keep.join('\n')}\n`, { mode: 0o600 });
    fs.renameSync(tmp, file);
  }

  private readAll(deploymentId: string): LogLine[] {
    let content: string;
    try {
      content = fs.readFileSync(this.file(deploymentId), 'utf8');
    } catch {
      return [];
    }
    const out: LogLine[] = [];
    for (const raw of content.split('\n')) {
      if (!raw) continue;
      try {
        out.push(toLine(JSON.parse(raw) as StoredLine));
      } catch {
        // a line cut by a crash mid-write
      }
    }
    return out;
  }

  /** Lines after `afterId` (all when null), at most the last `limit` of them. */
  read(deploymentId: string, afterId: number | null, limit = 1000): LogLine[] {
    const lines = this.readAll(deploymentId).filter((l) => afterId === null || l.id > afterId);
    return lines.slice(-limit);
  }

  /** Yields lines after `afterId`, then new ones as they come, until `signal` aborts. */
  async *follow(
    deploymentId: string,
    afterId: number | null,
    signal: AbortSignal,
    pollMs = 500,
  ): AsyncGenerator<LogLine> {
    let last = afterId;
    const queue: LogLine[] = [];
    let wake: (() => void) | undefined;
    const onLine = (line: LogLine) => {
      queue.push(line);
      wake?.();
    };
    this.emitter.on(deploymentId, onLine);
    const onAbort = () => wake?.();
    signal.addEventListener('abort', onAbort);
    try {
      for (const line of this.read(deploymentId, last)) {
        last = line.id;
        yield line;
      }
      while (!signal.aborted) {
        if (!queue.length) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            setTimeout(resolve, pollMs).unref();
          });
          wake = undefined;
          // Another process may be the writer: pick up what it appended.
          if (!queue.length) queue.push(...this.read(deploymentId, last));
        }
        while (queue.length) {
          const line = queue.shift()!;
          if (last !== null && line.id <= last) continue;
          last = line.id;
          yield line;
        }
      }
    } finally {
      this.emitter.off(deploymentId, onLine);
      signal.removeEventListener('abort', onAbort);
    }
  }

  remove(deploymentId: string): void {
    fs.rmSync(this.file(deploymentId), { force: true });
    this.nextIds.delete(deploymentId);
  }
}

function toLine(s: StoredLine): LogLine {
  return { id: s.i, time: new Date(s.t), source: s.s, stream: s.o, text: s.m };
}
