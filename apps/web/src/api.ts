import { type AppRouter, createClient, isCodeRunnerError } from '@coderunner/api/client';
import { QueryClient } from '@tanstack/react-query';
import { createTRPCContext } from '@trpc/tanstack-react-query';

/** The dashboard's session is an HttpOnly cookie: no token ever reaches this page's scripts. */
export const client = createClient({ url: `${window.location.origin}/trpc`, session: 'cookie' });

export const { TRPCProvider, useTRPC } = createTRPCContext<AppRouter>();

export function createQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        // A refused call (not logged in, not found, bad input) will not succeed by trying again.
        retry: (count, err) => count < 2 && !(isCodeRunnerError(err) && err.data.httpStatus < 500),
        refetchOnWindowFocus: false,
      },
    },
  });
}

/** What a person can act on: the server's message, with the wait for 429/503 and the id for 500. */
export function errorText(err: unknown): string {
  if (isCodeRunnerError(err)) {
    const { code, retryAfterSeconds, requestId } = err.data;
    if (code === 'TOO_MANY_REQUESTS' || code === 'SERVICE_UNAVAILABLE')
      return `${err.message}${retryAfterSeconds ? ` (try again in ${retryAfterSeconds} s)` : ''}`;
    if (requestId) return `Something went wrong on the server (request id ${requestId}).`;
    return capitalize(err.message);
  }
  if (err instanceof Error) {
    if (/fetch|network/i.test(err.message)) return 'The server cannot be reached. Check your connection.';
    return capitalize(err.message);
  }
  return 'Something went wrong.';
}

/** The validation message for one field, if the error names it. */
export function fieldError(err: unknown, field: string): string | undefined {
  if (!isCodeRunnerError(err)) return undefined;
  const issue = err.data.issues?.find((i) => i.path[0] === field);
  return issue ? `${capitalize(field)} ${issue.message}` : undefined;
}

/** A message as the dashboard shows it (errorText does the same to the server's). */
export const capitalize = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
