/**
 * What a failure of the AgentSphere SDK means for us. The SDK (a fork of the E2B SDK 1.x) has no error
 * codes: REST failures are `SandboxError("<status>: <message>")`, envd failures are a handful of error
 * classes whose message tells the cause apart. Everything that reads those messages lives here, and
 * errors are recognised by `name`, not `instanceof`, so an injected `Sandbox` class from another copy of
 * the SDK (or from the `e2b` package) is understood too.
 */
import { SandboxError } from '../types';

/** AgentSphere refused our credentials (401). Not retried: only a new key helps. */
export class ProviderAuthError extends SandboxError {
  override name = 'ProviderAuthError';
}

/** Our own deadline around an SDK call (some SDK calls, like file uploads, have none). */
export class RequestTimeoutError extends Error {
  override name = 'RequestTimeoutError';
  constructor(what: string, timeoutMs: number) {
    super(`no answer within ${timeoutMs} ms while trying to ${what}`);
  }
}

export type FailureKind =
  /** 401: the API key is wrong. */
  | 'auth'
  /** 403: the service refuses this team (quota, credits, a blocked account): its message says why. */
  | 'forbidden'
  /** 429: a rate or concurrency limit. Retried once after a pause, then reported as such. */
  | 'rate-limited'
  /** The sandbox cannot be kept alive any longer: the plan's maximum lifetime. */
  | 'max-lifetime'
  /** 404 from the REST API: the sandbox does not exist (any more). */
  | 'not-found'
  /** envd did not answer for this sandbox (502 from AgentSphere's edge): it has probably died. */
  | 'unreachable'
  /** Network error, request timeout or 5xx: worth retrying. */
  | 'transient'
  /** A command ran past its own `timeoutMs`. */
  | 'deadline'
  | 'other';

export interface Failure {
  kind: FailureKind;
  status?: number;
  /** Short, human-readable cause (never contains the API key: the SDK does not put it in messages). */
  detail: string;
}

/**
 * How an E2B-style API words a refused extension or a timeout beyond the plan's limit (E2B: 1 h Hobby,
 * 24 h Pro; e.g. "Timeout cannot be greater than 24 hours"). Not verified against AgentSphere itself.
 */
const MAX_LIFETIME =
  /(max(imum)?|longest)\b.{0,40}\b(lifetime|instance length|length|duration)|cannot be (greater|longer) than \d+ hours?|cannot be (kept alive|extended)/i;

const NETWORK_FAILURE =
  /fetch failed|terminated|socket hang up|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|UND_ERR/i;

export function classifyFailure(err: unknown): Failure {
  const detail = describeError(err);
  if (!(err instanceof Error)) return { kind: 'other', detail };
  // fetch rejects with the AbortSignal.timeout() reason, a DOMException named TimeoutError.
  if (err instanceof DOMException && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
    return { kind: 'transient', detail };
  }
  const status = Number(/^(\d{3}): /.exec(err.message)?.[1]) || undefined;
  switch (err.name) {
    case 'AuthenticationError':
      return { kind: 'auth', status: status ?? 401, detail };
    case 'RateLimitError':
      return { kind: 'rate-limited', status: 429, detail };
    case 'RequestTimeoutError':
      return { kind: 'transient', detail };
    case 'NotFoundError':
      // envd's "Sandbox is probably not running anymore"; other envd 404s are about a file or process.
      return { kind: /not running/i.test(err.message) ? 'unreachable' : 'other', status: 404, detail };
    case 'TimeoutError':
      if (/sandbox timeout/i.test(err.message)) return { kind: 'unreachable', status: 502, detail };
      if (/'timeoutMs'/.test(err.message)) return { kind: 'deadline', detail };
      return { kind: 'transient', detail };
  }
  if (status === 401) return { kind: 'auth', status, detail };
  if (status === 403) return { kind: 'forbidden', status, detail };
  if (status === 404) return { kind: 'not-found', status, detail };
  if (status === 429) return { kind: 'rate-limited', status, detail };
  if (status !== undefined && status >= 400 && status < 500 && MAX_LIFETIME.test(err.message)) {
    return { kind: 'max-lifetime', status, detail };
  }
  if (status !== undefined && status >= 500) return { kind: 'transient', status, detail };
  if (NETWORK_FAILURE.test(detail)) return { kind: 'transient', detail };
  return { kind: 'other', status, detail };
}

/** The error's message plus its cause (fetch hides the interesting part, e.g. ECONNREFUSED, there). */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
  const text = `${err.message}${cause}`;
  return text.length > 300 ? `${text.slice(0, 297)}...` : text;
}

/** Is this the SDK's CommandExitError (a command that ran and exited non-zero)? */
export function isCommandExit(
  err: unknown,
): err is Error & { exitCode: number; stdout: string; stderr: string; error?: string } {
  return err instanceof Error && err.name === 'CommandExitError';
}
