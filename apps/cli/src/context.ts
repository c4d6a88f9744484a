/**
 * What a command needs to run: where the server is, the token, the saved config, the output, and a
 * typed client. Built once per invocation from the global options and the environment.
 */
import { type CodeRunnerClient, createClient } from '@coderunner/api/client';
import type { Command } from 'commander';
import { ConfigStore, type SavedConfig } from './config';
import { CliError, ExitCode, NOT_LOGGED_IN, toCliError, UsageError } from './errors';
import { Output, type Streams } from './output';

export const DEFAULT_API_URL = 'http://localhost:8080';

export interface GlobalOptions {
  apiUrl?: string;
  json?: boolean;
  debug?: boolean;
}

/** `http(s)://host[:port][/prefix]` without trailing slashes; anything else is a usage error. */
export function normaliseApiUrl(raw: string, from: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new UsageError(`${from} is not a URL: ${raw}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`${from} must be an http:// or https:// URL: ${raw}`);
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new UsageError(
      `${from} must be a plain server address (no credentials, query or fragment): ${raw}`,
    );
  }
  return url.toString().replace(/\/+$/, '');
}

export class Context {
  readonly out: Output;
  readonly config: ConfigStore;
  readonly json: boolean;
  readonly debug: boolean;
  private saved: SavedConfig | undefined;
  private resolvedUrl: string | undefined;

  constructor(
    readonly globals: GlobalOptions,
    readonly env: NodeJS.ProcessEnv = process.env,
    streams: Streams = { stdout: process.stdout, stderr: process.stderr },
  ) {
    this.json = globals.json === true;
    this.debug = globals.debug === true;
    this.out = new Output(this.json, streams, env);
    this.config = new ConfigStore(env);
  }

  /** The saved config, read once per invocation. */
  savedConfig(): SavedConfig {
    this.saved ??= this.config.read();
    return this.saved;
  }

  /** --api-url, else $CODERUNNER_API_URL, else the saved server, else http://localhost:8080. */
  get apiUrl(): string {
    if (this.resolvedUrl) return this.resolvedUrl;
    const [raw, from] = this.globals.apiUrl
      ? [this.globals.apiUrl, '--api-url']
      : this.env.CODERUNNER_API_URL
        ? [this.env.CODERUNNER_API_URL, 'CODERUNNER_API_URL']
        : [this.savedConfig().apiUrl ?? DEFAULT_API_URL, `apiUrl in ${this.config.file}`];
    this.resolvedUrl = normaliseApiUrl(raw, from);
    return this.resolvedUrl;
  }

  /** $CODERUNNER_TOKEN (for CI), else the saved token. */
  get token(): { value: string; source: 'env' | 'config' } | null {
    if (this.env.CODERUNNER_TOKEN) return { value: this.env.CODERUNNER_TOKEN.trim(), source: 'env' };
    const saved = this.savedConfig().token;
    return saved ? { value: saved, source: 'config' } : null;
  }

  /** A client without credentials (register, login). */
  anonymousClient(): CodeRunnerClient {
    return createClient({ url: `${this.apiUrl}/trpc` });
  }

  /** A client sending the token; without one there is nothing to ask the server: exit 3. */
  client(): CodeRunnerClient {
    const token = this.token;
    if (!token) throw new CliError(NOT_LOGGED_IN, ExitCode.notLoggedIn);
    return createClient({ url: `${this.apiUrl}/trpc`, token: token.value });
  }

  /** Any error a command threw, as a CliError with its exit code and message. */
  toCliError(err: unknown): CliError {
    let apiUrl: string;
    try {
      apiUrl = this.apiUrl;
    } catch {
      apiUrl = this.globals.apiUrl ?? this.env.CODERUNNER_API_URL ?? DEFAULT_API_URL;
    }
    let tokenSource: 'env' | 'config' | null = null;
    try {
      tokenSource = this.token?.source ?? null;
    } catch {
      // an unreadable config already explains itself
    }
    return toCliError(err, { apiUrl, tokenSource });
  }
}

/**
 * Wraps a command's handler for commander: builds the Context from the global options and turns
 * whatever the handler throws into a CliError that knows its exit code.
 *
 * The handler gets the command's positional arguments (a variadic last one spread out) and its own
 * options.
 */
export function handler<O extends object = Record<string, never>>(
  fn: (ctx: Context, args: string[], opts: O) => Promise<void>,
) {
  return async (...all: unknown[]): Promise<void> => {
    const command = all[all.length - 1] as Command;
    const ctx = new Context(command.optsWithGlobals<GlobalOptions>());
    try {
      // A variadic last argument (`<names...>`) takes every remaining word.
      const variadic = command.registeredArguments.at(-1)?.variadic === true;
      const args = variadic ? command.args : command.args.slice(0, command.registeredArguments.length);
      await fn(ctx, args, command.opts<O>());
    } catch (err) {
      throw ctx.toCliError(err);
    }
  };
}
