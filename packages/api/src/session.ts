/**
 * Browser sessions: the token lives in an `HttpOnly` cookie the page's scripts cannot read. A client
 * asks for it by sending SESSION_HEADER (on every call); the server honours the cookie only on calls
 * carrying that header, which a cross-site form cannot send (and a cross-site script only after a
 * CORS preflight the server refuses). Shared by the server and the client: no server code here.
 */
export const SESSION_COOKIE = 'coderunner_session';
export const SESSION_HEADER = 'x-coderunner-session';
