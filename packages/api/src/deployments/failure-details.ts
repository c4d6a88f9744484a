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
