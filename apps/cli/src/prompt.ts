/**
 * Reading from the person at the terminal, and from a pipe.
 *
 * Prompts are drawn on stderr, so stdout stays the command's result (`coderunner login --json > f`
 * still prompts). Input is read with the terminal in raw mode by one reader for every prompt of the
 * command: text typed ahead of a prompt (a fast typist, a paste of "email⏎password⏎") lands in the
 * right answer and a password is never echoed, which a readline interface per question cannot
 * promise. Hidden answers echo nothing at all, like sudo and ssh.
 */
import type { ReadStream } from 'node:tty';
import { CliError, InterruptedError, UsageError } from './errors';

export interface Terminal {
  input: NodeJS.ReadableStream & { isTTY?: boolean };
  output: NodeJS.WritableStream;
}

export function isInteractive(term: Terminal = defaultTerminal()): boolean {
  return term.input.isTTY === true;
}

export function defaultTerminal(): Terminal {
  return { input: process.stdin, output: process.stderr };
}

const CTRL_C = '\u0003';
const CTRL_D = '\u0004';
const CTRL_U = '\u0015';
const BACKSPACES = new Set(['\u007f', '\b']);

/** One raw-mode session over the terminal; `close()` gives the terminal back as it was. */
export class Prompter {
  private pending = '';
  private wake: (() => void) | undefined;
  private ended = false;
  private started = false;
  private readonly onData = (chunk: string) => {
    this.pending += chunk;
    this.notify();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.notify();
  };

  constructor(private readonly term: Terminal = defaultTerminal()) {}

  private notify() {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private start() {
    if (this.started) return;
    this.started = true;
    const input = this.term.input as ReadStream;
    input.setRawMode?.(true);
    input.setEncoding('utf8');
    input.on('data', this.onData);
    input.on('end', this.onEnd);
    input.resume();
  }

  close(): void {
    if (!this.started) return;
    this.started = false;
    const input = this.term.input as ReadStream;
    input.off('data', this.onData);
    input.off('end', this.onEnd);
    input.setRawMode?.(false);
    input.pause();
  }

  private async nextChar(): Promise<string | undefined> {
    while (!this.pending) {
      if (this.ended) return undefined;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
    // One key: an escape sequence (arrows, function keys) as a whole, else one code point.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: matching the escape character is the point
    const [ch = ''] = this.pending.match(/^\u001b(\[[0-?]*[ -/]*[@-~]|O.|.)?|^[\s\S]/u) ?? [];
    this.pending = this.pending.slice(ch.length);
    return ch;
  }

  /** Ask for one line; `hidden` echoes nothing. Ctrl-C interrupts, Ctrl-D on an empty line aborts. */
  async ask(question: string, opts: { hidden?: boolean } = {}): Promise<string> {
    this.start();
    const out = this.term.output;
    out.write(question);
    const chars: string[] = [];
    for (;;) {
      const ch = await this.nextChar();
      if (ch === undefined || (ch === CTRL_D && chars.length === 0)) {
        out.write('\n');
        throw new CliError('no answer (input closed)');
      }
      if (ch === CTRL_C) {
        out.write('\n');
        throw new InterruptedError();
      }
      if (ch === '\r' || ch === '\n') {
        out.write('\n');
        if (ch === '\r' && this.pending.startsWith('\n')) this.pending = this.pending.slice(1);
        return chars.join('');
      }
      if (BACKSPACES.has(ch)) {
        if (chars.pop() !== undefined && !opts.hidden) out.write('\b \b');
        continue;
      }
      if (ch === CTRL_U) {
        if (!opts.hidden) out.write('\b \b'.repeat(chars.length));
        chars.length = 0;
        continue;
      }
      // Other control characters and escape sequences (arrows, function keys) are ignored.
      // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
      if (/^[\u0000-\u001f\u007f]/.test(ch)) continue;
      chars.push(ch);
      if (!opts.hidden) out.write(ch);
    }
  }

  /** y/N question: only y or yes (any case) is a yes. */
  async confirm(question: string): Promise<boolean> {
    const answer = await this.ask(`${question} [y/N] `);
    return /^y(es)?$/i.test(answer.trim());
  }
}

/** Run `fn` with a prompter, always giving the terminal back. */
export async function withPrompter<T>(fn: (p: Prompter) => Promise<T>, term?: Terminal): Promise<T> {
  const prompter = new Prompter(term);
  try {
    return await fn(prompter);
  } finally {
    prompter.close();
  }
}

/** All of stdin as text (for --password-stdin). */
/**
 * A destructive command's confirmation: nothing to do with `yes`; else a usage error (exit 2) where
 * there is no terminal to ask on, the question, and `declined` (exit 1) for a no.
 */
export async function confirmOrRefuse(opts: {
  yes: boolean | undefined;
  /** What is not done, e.g. `not deleting project "web"`. */
  refused: string;
  question: string;
  declined: string;
}): Promise<void> {
  if (opts.yes) return;
  if (!isInteractive())
    throw new UsageError(`${opts.refused} without confirmation: there is no terminal to ask on, pass --yes`);
  const ok = await withPrompter((p) => p.confirm(opts.question));
  if (!ok) throw new CliError(opts.declined);
}

export async function readStdin(input: NodeJS.ReadableStream = process.stdin): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}

/** The input without its one trailing line break (\n or \r\n). */
export function stripTrailingNewline(text: string): string {
  return text.replace(/\r?\n$/, '');
}
