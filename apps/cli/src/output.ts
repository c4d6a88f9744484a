import { stripVTControlCharacters } from 'node:util';

/**
 * Everything the CLI prints goes through here. stdout carries the result only (one JSON document with
 * --json, else text for people); messages about what is happening go to stderr. Colours only on a
 * terminal and only when NO_COLOR is unset (https://no-color.org).
 */

export interface Streams {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

const CODES = {
  bold: [1, 22],
  dim: [2, 22],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  cyan: [36, 39],
};
export type Style = keyof typeof CODES;

export function colourAllowed(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  return stream.isTTY === true && !env.NO_COLOR;
}

/**
 * Text that came from the server (names, descriptions, messages) with terminal control characters made
 * visible, so a crafted value cannot move the cursor or rewrite the screen.
 */
export function printable(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => {
    const hex = c.charCodeAt(0).toString(16).padStart(2, '0');
    return `\\x${hex}`;
  });
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching escape sequences is the point
const SGR = /\u001b\[[0-9;:]*m/g;

/**
 * An app's or a build's output line: its colours (SGR escapes, `ESC[32m`) kept when `colour` is set
 * (a terminal, NO_COLOR unset) and reset at the line's end so they never bleed into the next line;
 * removed otherwise, so a pipe or a file gets clean text rather than `\x1b[32m`. Every other escape
 * sequence (cursor moves, erase-line from progress bars) is removed, and any control character left
 * is made visible, as in `printable`.
 */
export function logText(text: string, colour: boolean): string {
  const clean = (part: string) => printable(stripVTControlCharacters(part));
  if (!colour) return clean(text);
  const codes = text.match(SGR) ?? [];
  if (codes.length === 0) return clean(text);
  const parts = text.split(SGR).map(clean);
  return `${parts.map((part, i) => (i === 0 ? part : (codes[i - 1] ?? '') + part)).join('')}\u001b[0m`;
}

/** One line for a table cell: newlines and tabs become spaces, long text is cut with an ellipsis. */
export function cell(text: string, max = Number.POSITIVE_INFINITY): string {
  const flat = printable(text.replace(/[\r\n\t]+/g, ' '));
  const chars = Array.from(flat);
  return chars.length > max ? `${chars.slice(0, Math.max(0, max - 1)).join('')}…` : flat;
}

/** Local date and time to the minute, e.g. 2025-11-28 03:12. */
export function shortDate(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

const width = (s: string) => Array.from(s).length;

export class Output {
  readonly colour: boolean;
  private readonly errColour: boolean;

  constructor(
    readonly json: boolean,
    private readonly streams: Streams,
    env: NodeJS.ProcessEnv,
  ) {
    this.colour = !json && colourAllowed(streams.stdout, env);
    this.errColour = colourAllowed(streams.stderr, env);
  }

  /** stderr itself, for progress drawn in place (a status line) when it is a terminal. */
  get stderr(): Streams['stderr'] {
    return this.streams.stderr;
  }

  /** Whether colours may be used on stdout (`false`) or stderr (`true`). */
  colourOn(forStderr: boolean): boolean {
    return forStderr ? this.errColour : this.colour;
  }

  /** Whether colours may be used on stderr. */
  get stderrColour(): boolean {
    return this.errColour;
  }

  /** One line on stdout, also under --json (for NDJSON streams, which are the result). */
  printLine(text: string): void {
    this.streams.stdout.write(`${text}\n`);
  }

  style(text: string, style: Style, forStderr = false): string {
    if (!(forStderr ? this.errColour : this.colour)) return text;
    const [on, off] = CODES[style];
    return `\u001b[${on}m${text}\u001b[${off}m`;
  }

  /** The command's result as one JSON document (dates become ISO strings through Date#toJSON). */
  printJson(value: unknown): void {
    this.streams.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** Result text for people (ignored under --json: the JSON document is the whole result). */
  print(text = ''): void {
    if (this.json) return;
    this.streams.stdout.write(`${text}\n`);
  }

  /** Progress and advice, on stderr in every mode. */
  info(text: string): void {
    this.streams.stderr.write(`${text}\n`);
  }

  warn(text: string): void {
    this.streams.stderr.write(`${this.style('warning:', 'yellow', true)} ${text}\n`);
  }

  error(text: string): void {
    this.streams.stderr.write(`${this.style('error:', 'red', true)} ${text}\n`);
  }

  /** A table with a header row; columns padded to their widest cell, two spaces apart, no borders. */
  table(headers: string[], rows: string[][]): void {
    const widths = headers.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ''))));
    const line = (cells: string[]) =>
      cells
        .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat((widths[i] ?? 0) - width(c))))
        .join('  ')
        .trimEnd();
    this.print(this.style(line(headers), 'bold'));
    for (const row of rows) this.print(line(row));
  }

  /** Label/value pairs, labels aligned: "name     web". */
  fields(pairs: [string, string][]): void {
    const w = Math.max(...pairs.map(([k]) => width(k)));
    for (const [k, v] of pairs) this.print(`${this.style(k.padEnd(w), 'dim')}  ${v}`);
  }
}
