/**
 * The few lines of a failed command's output that say why it failed, for the `failed` event's
 * reason (what the user reads first: the dashboard's deployment page, `deployments get`, the CLI's
 * final error). Package managers print screens of warnings before the one line that matters (pip's
 * "No matching distribution found for Flask==3.1.2", npm's `npm error` lines, an out-of-memory
 * kill): noise is dropped, and lines that look like errors are preferred to the rest.
 */
import type { LogLine, LogStore } from './log-store';

/** At most this many lines, each at most this long. */
export const DETAIL_LINES = 5;
const DETAIL_CHARS = 300;

/** Output that never explains a failure: warnings, notices, npm's bookkeeping lines, blank lines. */
const NOISE: RegExp[] = [
  /^\s*$/,
  /^\s*npm (warn|WARN|notice)\b/,
  /^\s*npm (error|ERR!)\s*$/,
  /^\s*npm (error|ERR!) (code|errno|syscall|command|workspace|location)\b/,
  /^\s*npm (error|ERR!) Lifecycle script/,
  /^> /, // npm's echo of the script it runs (`> build`, `> tsc`): the command, not its output
  /A complete log of this run can be found in/,
  /^\s*\[notice\]/,
  /^\s*(WARNING|DEPRECATION):/,
  /^\s*warning\b/i,
];

/** Lines that look like the reason itself. */
const ERRORISH =
  /\berror\b|\bERR!|\bfatal\b|\bfailed\b|\bcannot\b|\bcan't\b|not found|no matching|no such file|out of memory|\bkilled\b|exception|traceback/i;

/**
 * The meaningful tail of `output` (oldest first): the last error-like lines if there are any, else
 * the last lines that are not noise.
 */
export function meaningfulLines(output: readonly string[], max = DETAIL_LINES): string[] {
  const kept = output.map((l) => l.trimEnd()).filter((l) => !NOISE.some((re) => re.test(l)));
  const errors = kept.filter((l) => ERRORISH.test(l));
  return (errors.length ? errors : kept)
    .slice(-max)
    .map((l) => (l.length > DETAIL_CHARS ? `${l.slice(0, DETAIL_CHARS)}…` : l));
}

/**
 * The output of the step that just ended (the `source` lines after the newest system line, among
 * the last `lines` of the log), reduced to its meaningful tail.
 */
export function stepDetails(lines: readonly LogLine[], source: LogLine['source']): string[] {
  let start = lines.length;
  while (start > 0 && lines[start - 1]!.source !== 'system') start--;
  return meaningfulLines(
    lines
      .slice(start)
      .filter((l) => l.source === source)
      .map((l) => l.text),
  );
}

/** The meaningful tail of what the step that just failed printed, read from the end of its log. */
export async function outputDetails(logs: LogStore, id: string, source: 'build' | 'app'): Promise<string[]> {
  const lines = await logs.read(id, null, 300).catch(() => []);
  return stepDetails(lines, source);
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes are control characters
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;
/** Where servers say they listen: "http://localhost:5173/", "0.0.0.0:8000", "listening on port 3000". */
const LISTEN_MENTIONS = [
  /(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1?\]|\[::ffff:127\.0\.0\.1\]):(\d{2,5})\b/g,
  /\b(?:listening|listens|running|started|serving|server)\b[^\n]{0,40}?\bport\s*:?\s*(\d{2,5})\b/gi,
];

/** The last port other than `port` that the app's output says it listens on, if any. */
export function portListenedOn(lines: readonly string[], port: number): number | null {
  let found: number | null = null;
  for (const raw of lines) {
    const line = raw.replace(ANSI, '');
    for (const re of LISTEN_MENTIONS) {
      for (const m of line.matchAll(re)) {
        const n = Number(m[1]);
        if (n !== port && n > 0 && n < 65536) found = n;
      }
    }
  }
  return found;
}

/**
 * Why a started app was not ready: the readiness message, or, when it never listened on its port
 * but its output says it listens on another, that (a dev server on its own port is the usual case).
 */
export async function notReadyReason(
  logs: LogStore,
  id: string,
  port: number,
  message: string,
): Promise<string> {
  if (!/did not listen on port/.test(message)) return message;
  const lines = await logs.read(id, null, 300).catch(() => []);
  let start = lines.length;
  while (start > 0 && lines[start - 1]!.source !== 'system') start--;
  const other = portListenedOn(
    lines.slice(start).map((l) => l.text),
    port,
  );
  return other === null
    ? message
    : `listened on ${other}, not on $PORT (${port}): make it listen on the PORT variable`;
}
