/**
 * Every failure the CLI reports becomes a CliError carrying its exit code. The codes are part of the
 * command's interface (scripts branch on them), so they are named here once.
 */
import { TRPCClientError } from '@trpc/client';

export const ExitCode = {
  ok: 0,
  /** The operation failed: the server refused it (CONFLICT, FORBIDDEN, NOT_FOUND, ...) or an I/O error. */
  failed: 1,
  /** The command line is wrong: unknown command or option, missing argument, a value out of range. */
  usage: 2,
  /** No token, or the server no longer accepts it. */
  notLoggedIn: 3,
  /** No answer from the server at all. */
  unreachable: 4,
  /** Ctrl-C at a prompt (128 + SIGINT, like a shell). */
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: ExitCode = ExitCode.failed,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class UsageError extends CliError {
  override name = 'UsageError';
  constructor(message: string) {
    super(message, ExitCode.usage);
  }
}

/** Ctrl-C at a prompt: nothing more to say. */
export class InterruptedError extends CliError {
  override name = 'InterruptedError';
  constructor() {
    super('interrupted', ExitCode.interrupted);
  }
}

export const NOT_LOGGED_IN = 'not logged in: run coderunner login';
export const SESSION_EXPIRED = 'your session has expired: run coderunner login';
export const ENV_TOKEN_REJECTED =
  'the token in CODERUNNER_TOKEN is invalid or expired: set a fresh one, or unset it and run coderunner login';

export type TrpcErrorCode =
  | 'BAD_REQUEST'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'TOO_MANY_REQUESTS'
  | 'INTERNAL_SERVER_ERROR'
  | (string & {});

/** The tRPC code of an error the server answered with; undefined when there was no tRPC answer. */
export function trpcCode(err: unknown): TrpcErrorCode | undefined {
  if (!(err instanceof TRPCClientError)) return undefined;
  const data = err.data as { code?: unknown } | undefined;
  return typeof data?.code === 'string' ? data.code : undefined;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_HEADERS_TIMEOUT',
]);

/** The deepest cause's message, e.g. "connect ECONNREFUSED 127.0.0.1:8080". */
function rootCause(err: unknown): string {
  let e: unknown = err;
  for (let depth = 0; depth < 6; depth++) {
    const next: unknown = e instanceof AggregateError ? e.errors[0] : (e as { cause?: unknown })?.cause;
    if (!next) break;
    e = next;
  }
  return e instanceof Error ? e.message : String(e);
}

const unreachable = (apiUrl: string, err: unknown) =>
  new CliError(`cannot reach ${apiUrl} — is the server running? (${rootCause(err)})`, ExitCode.unreachable, {
    cause: err,
  });

/** True when fetch itself failed (nothing answered), as opposed to an answer we did not like. */
function isNetworkFailure(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 6; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return true;
    if (e instanceof TypeError && e.message === 'fetch failed') return true;
    if (e instanceof AggregateError && e.errors.some(isNetworkFailure)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

export interface ErrorContext {
  /** The server's base URL, for "cannot reach ...". */
  apiUrl: string;
  /** Where the token came from, for the right advice when the server refuses it. */
  tokenSource: 'env' | 'config' | null;
}

/**
 * The CliError for anything a command threw. An UNAUTHORIZED answer here always means the session:
 * commands whose UNAUTHORIZED means something else (a wrong password at login) handle it themselves.
 */
export function toCliError(err: unknown, ctx: ErrorContext): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof TRPCClientError) {
    const code = trpcCode(err);
    if (code === undefined) {
      if (isNetworkFailure(err)) return unreachable(ctx.apiUrl, err);
      return new CliError(
        `unexpected answer from ${ctx.apiUrl} (is it a CodeRunner server?): ${err.message}`,
        ExitCode.failed,
        { cause: err },
      );
    }
    if (code === 'UNAUTHORIZED') {
      const message = ctx.tokenSource === 'env' ? ENV_TOKEN_REJECTED : SESSION_EXPIRED;
      return new CliError(message, ExitCode.notLoggedIn, { cause: err });
    }
    return new CliError(err.message, ExitCode.failed, { cause: err });
  }
  if (isNetworkFailure(err)) return unreachable(ctx.apiUrl, err);
  const message = err instanceof Error ? err.message : String(err);
  return new CliError(message, ExitCode.failed, { cause: err });
}
