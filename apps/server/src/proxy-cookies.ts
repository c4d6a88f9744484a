/**
 * The dashboard's session cookie never crosses the app proxy, in either direction:
 *  - a request's `Cookie` header loses `coderunner_session` before it reaches an app (a browser sends
 *    it wherever the cookie's domain matches: e.g. apps at `<id>.example.com` under a dashboard at
 *    `example.com` whose cookie had a Domain; the token is a bearer credential for the API);
 *  - an app's `Set-Cookie` for that name is dropped (session fixation: an app must not pick which
 *    session a dashboard user's browser signs in with).
 * Other cookies pass untouched: the app's own are its business.
 * Names are compared without regard to case and surrounding spaces: dropping a look-alike costs an
 * app nothing, and cookie parsers differ on both.
 */
import type http from 'node:http';
import { SESSION_COOKIE } from '@coderunner/api';

const SESSION = SESSION_COOKIE.toLowerCase();

/** Is a cookie pair's (`name=value`) or a Set-Cookie line's name the dashboard's session cookie? */
function isSession(pairOrLine: string): boolean {
  const eq = pairOrLine.indexOf('=');
  // A pair without "=" is a value with an empty name (RFC 6265bis, as browsers parse it).
  if (eq < 0) return false;
  return pairOrLine.slice(0, eq).trim().toLowerCase() === SESSION;
}

/** A Cookie header without the session cookie; undefined when nothing is left. */
export function withoutSessionCookie(cookie: string): string | undefined {
  const kept = cookie.split(';').filter((pair) => pair.trim() !== '' && !isSession(pair));
  return kept.length > 0 ? kept.map((pair) => pair.trim()).join('; ') : undefined;
}

/** Removes the session cookie from a request on its way to an app (HTTP and websocket alike). */
export function stripSessionCookie(req: http.IncomingMessage): void {
  const cookie = req.headers.cookie;
  if (cookie === undefined) return;
  const kept = withoutSessionCookie(cookie);
  if (kept === undefined) delete req.headers.cookie;
  else req.headers.cookie = kept;
}

/** Removes an app's Set-Cookie lines for the session cookie from its response headers (in place). */
export function dropSessionSetCookie(headers: http.IncomingHttpHeaders): void {
  const lines = headers['set-cookie'];
  if (!lines) return;
  const kept = lines.filter((line) => !isSession(line));
  if (kept.length === lines.length) return;
  if (kept.length > 0) headers['set-cookie'] = kept;
  else delete headers['set-cookie'];
}
