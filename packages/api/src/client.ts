/**
 * The typed client for frontends, the CLI and other apps. Imports only types from the server side,
 * so bundling it pulls in no server code.
 */
import { createTRPCClient, httpBatchLink } from '@trpc/client';
import superjson from 'superjson';
import type { AppRouter } from './root';

export interface ClientOptions {
  /** Base URL of the tRPC endpoint, e.g. http://localhost:8080/trpc */
  url: string;
  token?: string | undefined;
  fetch?: typeof fetch;
}

export function createClient(opts: ClientOptions) {
  return createTRPCClient<AppRouter>({
    links: [
      httpBatchLink({
        url: opts.url,
        transformer: superjson,
        headers: () => (opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        ...(opts.fetch ? { fetch: opts.fetch } : {}),
      }),
    ],
  });
}

export type CodeRunnerClient = ReturnType<typeof createClient>;
export type { AppRouter };
