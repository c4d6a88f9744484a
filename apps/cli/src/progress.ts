/**
 * Progress on stderr: a status line redrawn in place on a terminal (with a spinner and the time
 * spent), plain lines when stderr is a file or a pipe, nothing at all when quiet (--json). Log lines
 * are printed above the status line, which is redrawn under them.
 */
import { logText, type Output } from './output';
import type { LogLine } from './views';

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const CLEAR_LINE = '\r\u001b[2K';

export class StatusLine {
  private text = '';
  private shown = false;
  private frame = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly started = Date.now();
  /** Redrawn in place: stderr is a terminal. */
  readonly live: boolean;

  constructor(
    private readonly out: Output,
    private readonly quiet = false,
  ) {
    this.live = !quiet && out.stderr.isTTY === true;
    if (this.live) {
      this.timer = setInterval(() => this.render(), 120);
      this.timer.unref();
    }
  }

  /** The new status; without a terminal `plain` is printed as a line instead, when it changes. */
  set(text: string, plain = text): void {
    if (this.quiet || text === this.text) return;
    this.text = text;
    if (this.live) this.render();
    else this.out.stderr.write(`${plain}\n`);
  }

  /** A line of output above the status line. */
  line(text: string): void {
    if (this.quiet) return;
    this.clear();
    this.out.stderr.write(`${text}\n`);
    this.render();
  }

  /** Take the status line off the screen for good. */
  done(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.clear();
  }

  private clear(): void {
    if (!this.shown) return;
    this.out.stderr.write(CLEAR_LINE);
    this.shown = false;
  }

  private render(): void {
    if (!this.live || !this.text || !this.timer) return;
    const seconds = Math.floor((Date.now() - this.started) / 1000);
    const spinner = this.out.style(SPINNER[this.frame++ % SPINNER.length]!, 'cyan', true);
    const columns = (this.out.stderr as { columns?: number }).columns || 80;
    const text = `${this.text} (${seconds}s)`;
    const cut = Array.from(text)
      .slice(0, Math.max(10, columns - 3))
      .join('');
    this.out.stderr.write(`${CLEAR_LINE}${spinner} ${cut}`);
    this.shown = true;
  }
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** 2025-11-28 03:12:01, local time. */
export function logTime(time: Date): string {
  const d = new Date(time);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/**
 * A log line for people: `[time ]source  text`, the source dimmed and stderr output in red where
 * colours are allowed; the line's own colours pass through only where colours are allowed (see
 * logText), other escape sequences are removed and control characters made visible.
 */
export function formatLogLine(
  line: LogLine,
  out: Output,
  opts: { time: boolean; forStderr: boolean },
): string {
  const source = out.style(line.source.padEnd(6), 'dim', opts.forStderr);
  const text =
    line.stream === 'stderr'
      ? out.style(logText(line.text, out.colourOn(opts.forStderr)), 'red', opts.forStderr)
      : logText(line.text, out.colourOn(opts.forStderr));
  const time = opts.time ? `${out.style(logTime(line.time), 'dim', opts.forStderr)} ` : '';
  return `${time}${source} ${text}`;
}
