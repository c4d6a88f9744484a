/**
 * Who may sign up. Without tenant isolation every app can read every other app's environment,
 * files and databases (and the control plane's, on a host whose PostgreSQL trusts loopback), so a
 * second account would own the first: sign-up then closes once one account exists, unless the
 * operator accepts that risk in so many words.
 */
import { TRPCError } from '@trpc/server';

/** The variable that reopens sign-up on an unisolated server, and the only value it takes. */
export const UNISOLATED_OPEN_SIGNUP_VARIABLE = 'CODERUNNER_UNISOLATED_OPEN_SIGNUP';
export const UNISOLATED_OPEN_SIGNUP_ACCEPTANCE = 'i-accept-that-users-can-read-each-other';

/** `open`: anyone may sign up; `first-account-only`: only while no account exists. */
export type SignupPolicy = 'open' | 'first-account-only';

export function signupPolicy(isolation: 'sandbox' | 'none', riskAccepted: boolean): SignupPolicy {
  return isolation === 'none' && !riskAccepted ? 'first-account-only' : 'open';
}

export const SIGNUP_CLOSED_MESSAGE =
  "sign-up is closed: this server runs apps without tenant isolation, so every account could read the other accounts' apps, secrets and databases. " +
  `The operator can turn isolation on (see the README's "Tenant isolation") or accept that risk with ${UNISOLATED_OPEN_SIGNUP_VARIABLE}=${UNISOLATED_OPEN_SIGNUP_ACCEPTANCE}`;

export function signupClosed(): never {
  throw new TRPCError({ code: 'FORBIDDEN', message: SIGNUP_CLOSED_MESSAGE });
}
