/**
 * The one place where SDK calls happen: every call gets the explicit key and domain, a deadline, bounded
 * retries when it is safe to repeat, and its failure translated into the errors of ../types.
 */
import type { Sandbox as SdkSandbox } from 'agentsphere-sandbox-base';
import {
  ProviderQuotaError,
  ProviderUnavailableError,
  SandboxLifetimeExceededError,
  SandboxNotFoundError,
} from '../types';
import { classifyFailure, type Failure, ProviderAuthError, RequestTimeoutError } from './errors';

export type SandboxClass = typeof SdkSandbox;

export interface RetryPolicy {
  /** Total attempts for a call that may be repeated (1 = no retry). */
  attempts: number;
  /** Delay before the second attempt; doubles for each further one (with jitter). */
  baseDelayMs: number;
}

export interface ClientSettings {
  SandboxClass: SandboxClass;
  apiKey: string;
  domain: string;
  requestTimeoutMs: number;
  retry: RetryPolicy;
}

export interface CallOptions<T = unknown> {
  /** Repeat on transient failures: only for calls that are safe to repeat. */
  retry?: boolean;
  /**
   * Before a retry: the result of the failed attempt if it took effect anyway (a create that timed out
   * after the service made the sandbox), so that it is not done twice. Undefined: retry.
   */
  recover?: () => Promise<T | undefined>;
  /** The sandbox the call is about: a 404 then becomes SandboxNotFoundError. */
  sandboxId?: string;
}

const MAX_BACKOFF_MS = 10_000;
/** A 429 is tried once more, after this pause: a rate limit may pass, a concurrency quota does not. */
const RATE_LIMIT_PAUSE_MS = 2_000;
/** Our deadline trails the SDK's own request timeout so that, where the SDK has one, it fires first. */
const DEADLINE_GRACE_MS = 1_000;

export class AgentSphereClient {
  constructor(private readonly settings: ClientSettings) {}

  get SandboxClass(): SandboxClass {
    return this.settings.SandboxClass;
  }

  get requestTimeoutMs(): number {
    return this.settings.requestTimeoutMs;
  }

  /** Options for every SDK call: the SDK must never fall back to its own env vars. */
  get connection(): { apiKey: string; domain: string; requestTimeoutMs: number } {
    const { apiKey, domain, requestTimeoutMs } = this.settings;
    return { apiKey, domain, requestTimeoutMs };
  }

  /** `what` completes "could not …" in error messages, e.g. "create a sandbox". */
  async call<T>(what: string, fn: () => Promise<T>, opts: CallOptions<T> = {}): Promise<T> {
    const attempts = opts.retry ? Math.max(1, this.settings.retry.attempts) : 1;
    for (let attempt = 1; ; attempt++) {
      try {
        return await withDeadline(fn(), this.settings.requestTimeoutMs + DEADLINE_GRACE_MS, what);
      } catch (err) {
        const failure = classifyFailure(err);
        if (failure.kind === 'transient' && attempt < attempts) {
          await sleep(this.backoff(attempt));
          const recovered = await opts.recover?.().catch(() => undefined);
          if (recovered !== undefined) return recovered;
          continue;
        }
        if (failure.kind === 'rate-limited' && attempt < Math.min(2, attempts)) {
          await sleep(Math.max(RATE_LIMIT_PAUSE_MS, this.backoff(attempt)));
          continue;
        }
        throw await this.translate(err, failure, what, attempt, opts.sandboxId);
      }
    }
  }

  /** Turns an SDK failure into the error a caller of SandboxProvider expects. */
  async translate(
    err: unknown,
    failure: Failure,
    what: string,
    attempts: number,
    sandboxId?: string,
  ): Promise<unknown> {
    switch (failure.kind) {
      case 'auth':
        return new ProviderAuthError(
          `AgentSphere rejected the API key (${failure.status}): check AGENTSPHERE_API_KEY`,
        );
      case 'forbidden':
        return new ProviderQuotaError(
          `AgentSphere refused to ${what} (403): ${serviceMessage(failure.detail)}. ` +
            'This is about the account (quota, credits or a blocked team), not a passing failure: check the AgentSphere dashboard',
        );
      case 'rate-limited':
        return new ProviderQuotaError(
          `AgentSphere is limiting requests (429) and refused to ${what}: ${serviceMessage(failure.detail)}. ` +
            "The team's concurrent-sandbox limit or request rate is reached: stop unused deployments or raise the plan's limits",
        );
      case 'max-lifetime':
        return new SandboxLifetimeExceededError(
          `AgentSphere sandbox ${sandboxId ?? ''} reached its maximum lifetime: ${serviceMessage(failure.detail)}`,
        );
      case 'not-found':
        return sandboxId ? new SandboxNotFoundError(sandboxId) : err;
      case 'unreachable':
        // envd's silence alone does not prove the sandbox is gone: ask the API.
        if (sandboxId && !(await this.exists(sandboxId))) return new SandboxNotFoundError(sandboxId);
        return new ProviderUnavailableError(
          `AgentSphere sandbox ${sandboxId ?? ''} did not answer while trying to ${what} (${failure.detail})`,
        );
      case 'transient':
        return new ProviderUnavailableError(
          `AgentSphere is unavailable: could not ${what} after ${attempts} attempt(s) (${failure.detail}). ` +
            `Try again later; if it persists, check that https://api.${this.settings.domain} is reachable.`,
        );
      default:
        return err;
    }
  }

  async exists(sandboxId: string): Promise<boolean> {
    try {
      await this.call(
        `look up sandbox ${sandboxId}`,
        () => this.SandboxClass.getInfo(sandboxId, this.connection),
        { retry: true, sandboxId },
      );
      return true;
    } catch (err) {
      if (err instanceof SandboxNotFoundError) return false;
      throw err;
    }
  }

  private backoff(attempt: number): number {
    const exponential = this.settings.retry.baseDelayMs * 2 ** (attempt - 1);
    return Math.min(MAX_BACKOFF_MS, exponential * (0.5 + Math.random() / 2));
  }
}

/** The service's own words from an SDK message ("403: <message>"). */
function serviceMessage(detail: string): string {
  return detail.replace(/^\d{3}: /, '');
}

/** Rejects with RequestTimeoutError after `ms`; the abandoned call may still finish in the background. */
export function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RequestTimeoutError(what, ms)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
