import type { Sequelize } from '@coderunner/db';

/** What every procedure may use; built once by the server, shared by all requests. */
export interface ApiDeps {
  sequelize: Sequelize;
  /** Logs an unexpected error with the request id the client was told. */
  logError?: (err: unknown, meta: { requestId: string; path?: string }) => void;
}

/** The part of the context that needs no HTTP request: tests build it directly for `createCaller`. */
export interface InnerContextOptions {
  deps: ApiDeps;
  requestId?: string;
  /** Client address, for rate limits. */
  ip?: string;
}

export function createInnerContext(opts: InnerContextOptions) {
  return {
    deps: opts.deps,
    requestId: opts.requestId ?? crypto.randomUUID(),
    ip: opts.ip ?? 'local',
  };
}

export type Context = ReturnType<typeof createInnerContext>;
