import { Writable } from 'node:stream';
import { SESSION_COOKIE, UNISOLATED_OPEN_SIGNUP_ACCEPTANCE } from '@coderunner/api';
import { createClient, isCodeRunnerError, SESSION_HEADER } from '@coderunner/api/client';
import { createTestDatabase, freePort, type TestDatabase } from '@coderunner/db/testing';
import { TRPCClientError } from '@trpc/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/logger';
import { type RunningServer, startServer } from '../src/server';
import { appFolder, deployFolder } from './fixtures/deploy-helpers';
import { startServerProcess } from './load/fixtures/server-process';

const PASSWORD = 'correct horse battery staple';
const logLines: string[] = [];
const capture = new Writable({
  write(chunk, _enc, done) {
    logLines.push(...String(chunk).trim().split('\n'));
    done();
  },
});

let db: TestDatabase;
let server: RunningServer;
beforeAll(async () => {
  db = await createTestDatabase();
  server = await startServer(
    loadConfig({
      NODE_ENV: 'production',
      DATABASE_URL: db.url,
      PORT: '0',
      LOG_LEVEL: 'info',
      CODERUNNER_AUTH_SECRET: 'an-http-test-secret-of-enough-length!!',
      CODERUNNER_RATE_LIMIT_LOGIN_FAILURES: '5',
      CODERUNNER_RATE_LIMIT_AUTH_PER_IP: '1000',
      CORS_ORIGINS: 'https://app.example.com',
      CODERUNNER_MAX_JSON_KB: '64',
      // Tests register many users; on a machine that cannot isolate apps, sign-up would close after one.
      CODERUNNER_UNISOLATED_OPEN_SIGNUP: UNISOLATED_OPEN_SIGNUP_ACCEPTANCE,
    }),
    createLogger('info', capture),
  );
});
afterAll(async () => {
  await server?.close();
  await db?.drop();
});

const trpc = () => `${server.url}/trpc`;
const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'OK',
    (e) => (isCodeRunnerError(e) ? e.data.code : String(e)),
  );
/** The server's one-line-per-request log entries. */
const accessLines = () =>
  logLines.filter((l) => l.includes('"reqId"')).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('the typed client over real HTTP', () => {
  it('register → create → list round trip, dates as Date', async () => {
    const anon = createClient({ url: trpc() });
    const { token, user } = await anon.auth.register.mutate({
      email: 'Round@Trip.example',
      password: PASSWORD,
    });
    expect(user.email).toBe('round@trip.example');
    const client = createClient({ url: trpc(), token });
    const project = await client.projects.create.mutate({ name: 'web', description: 'site' });
    expect(project.createdAt).toBeInstanceOf(Date);
    const { items, nextCursor } = await client.projects.list.query();
    expect(items).toEqual([project]);
    expect(nextCursor).toBeNull();
    expect((await client.auth.me.query()).id).toBe(user.id);
  });

  it('errors reach the client with their code and message', async () => {
    const err = await createClient({ url: trpc() })
      .auth.me.query()
      .catch((e) => e);
    expect(err).toBeInstanceOf(TRPCClientError);
    expect(err.data.code).toBe('UNAUTHORIZED');
    expect(err.message).toMatch(/not logged in/);
  });
});

describe('the wire format (what curl sees)', () => {
  it('a query is a GET with superjson input; a mutation is a POST', async () => {
    const reg = await fetch(`${trpc()}/auth.register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ json: { email: 'wire@example.com', password: PASSWORD } }),
    });
    expect(reg.status).toBe(200);
    // biome-ignore lint/suspicious/noExplicitAny: raw wire JSON
    const body: any = await reg.json();
    expect(body.result.data.json.user.email).toBe('wire@example.com');
    expect(body.result.data.meta.values).toMatchObject({ 'user.createdAt': ['Date'] });
    const token = body.result.data.json.token;

    const me = await fetch(`${trpc()}/auth.me`, { headers: { authorization: `Bearer ${token}` } });
    expect(me.status).toBe(200);
    expect(
      ((await me.json()) as { result: { data: { json: { email: string } } } }).result.data.json.email,
    ).toBe('wire@example.com');

    const asPost = await fetch(`${trpc()}/auth.me`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(asPost.status).toBe(405);
  });

  it('validation errors are 400 with the field and reason, no stack', async () => {
    const res = await fetch(`${trpc()}/auth.register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ json: { email: 'nope', password: 'x' } }),
    });
    expect(res.status).toBe(400);
    // biome-ignore lint/suspicious/noExplicitAny: raw wire JSON
    const { error }: any = await res.json();
    expect(error.json.message).toBe(
      'email: must be an email address; password: must be at least 8 characters',
    );
    expect(error.json.data.code).toBe('BAD_REQUEST');
    expect(JSON.stringify(error)).not.toMatch(/stack|\.ts:\d+/);
  });

  it('sets security headers, CORS for configured origins only, and limits JSON bodies', async () => {
    const res = await fetch(`${server.url}/healthz`, { headers: { origin: 'https://app.example.com' } });
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toBeTruthy();
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    const other = await fetch(`${server.url}/healthz`, { headers: { origin: 'https://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();

    const big = await fetch(`${trpc()}/auth.login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ json: { email: 'a@b.co', password: 'x'.repeat(100 * 1024) } }),
    });
    expect(big.status).toBe(413);
    // The upload route's larger limit is for multipart uploads only: JSON there is held to the JSON
    // limit (a signed-in caller's was parsed up to 50 MB before being told to send form data).
    const { token } = await createClient({ url: trpc() }).auth.register.mutate({
      email: 'json-upload@example.com',
      password: PASSWORD,
    });
    const bigJson = await fetch(`${trpc()}/deployments.create`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ json: { source: 'x'.repeat(100 * 1024) } }),
    });
    expect(bigJson.status).toBe(413);
  });
});

describe('rate limiting over HTTP', () => {
  it('a batch of 50 logins in one request counts as 50; refusals carry Retry-After', async () => {
    const email = 'batch-target@example.com';
    await createClient({ url: trpc() }).auth.register.mutate({ email, password: PASSWORD });
    const calls = Array.from({ length: 50 }, () => ({ json: { email, password: 'wrong password' } }));
    const input = Object.fromEntries(calls.map((c, i) => [i, c]));
    const res = await fetch(`${trpc()}/${calls.map(() => 'auth.login').join(',')}?batch=1`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(input),
    });
    const results = (await res.json()) as { error: { json: { data: { code: string } } } }[];
    const codes = results.map((r) => r.error.json.data.code);
    expect(codes.filter((c) => c === 'UNAUTHORIZED').length).toBeLessThanOrEqual(5);
    expect(codes.filter((c) => c === 'TOO_MANY_REQUESTS').length).toBeGreaterThanOrEqual(45);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);

    // Even the right password is refused now, with the hint in the message.
    const err = await createClient({ url: trpc() })
      .auth.login.mutate({ email, password: PASSWORD })
      .catch((e) => e);
    expect(err.data.code).toBe('TOO_MANY_REQUESTS');
    expect(err.message).toMatch(/try again in \d+ s/);
    // The typed guard narrows the data: the wait is a number, also readable by browsers (exposed header).
    expect(isCodeRunnerError(err) && err.data.retryAfterSeconds).toBeGreaterThan(0);
    const cors = await fetch(`${trpc()}/auth.login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: 'https://app.example.com' },
      body: JSON.stringify({ json: { email, password: PASSWORD } }),
    });
    expect(cors.status).toBe(429);
    expect(cors.headers.get('access-control-expose-headers')).toMatch(/retry-after/);
  });
});

describe('a browser client', () => {
  const cookieOf = (res: Response) =>
    res.headers.getSetCookie().find((c) => c.startsWith(`${SESSION_COOKIE}=`));

  it('validation errors carry typed issues naming the field', async () => {
    const { token } = await createClient({ url: trpc() }).auth.register.mutate({
      email: 'issues@example.com',
      password: PASSWORD,
    });
    const err = await createClient({ url: trpc(), token })
      .projects.create.mutate({ name: '' })
      .catch((e) => e);
    expect(isCodeRunnerError(err)).toBe(true);
    expect(isCodeRunnerError(err) && err.data.issues).toEqual([
      { path: ['name'], message: 'must not be empty' },
    ]);
    expect(isCodeRunnerError(new Error('x'))).toBe(false);
  });

  it('a token set after login applies to the same client', async () => {
    let token: string | null = null;
    const client = createClient({ url: trpc(), token: () => token });
    expect(await codeOf(client.auth.me.query())).toBe('UNAUTHORIZED');
    token = (await client.auth.register.mutate({ email: 'later@example.com', password: PASSWORD })).token;
    expect((await client.auth.me.query()).email).toBe('later@example.com');
  });

  it('a cookie session: set on login (HttpOnly, SameSite=Strict), honoured only with the session header, cleared on logout', async () => {
    const email = 'cookie@example.com';
    await createClient({ url: trpc() }).auth.register.mutate({ email, password: PASSWORD });
    const login = await fetch(`${trpc()}/auth.login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [SESSION_HEADER]: '1' },
      body: JSON.stringify({ json: { email, password: PASSWORD } }),
    });
    expect(login.status).toBe(200);
    const body = (await login.json()) as { result: { data: { json: { token: string } } } };
    expect(body.result.data.json.token).toBe(''); // no page script ever holds it
    const cookie = cookieOf(login)!;
    expect(cookie).toMatch(/; HttpOnly/);
    expect(cookie).toMatch(/; SameSite=Strict/);
    expect(cookie).toMatch(/; Path=\//);
    expect(cookie).not.toMatch(/; Secure/); // plain http here
    const pair = cookie.split(';')[0]!;
    const me = (headers: Record<string, string>) =>
      fetch(`${trpc()}/auth.me`, { headers: { cookie: pair, ...headers } });
    expect((await me({ [SESSION_HEADER]: '1' })).status).toBe(200);
    expect((await me({})).status).toBe(401); // what a cross-site form or link would send
    const logout = await fetch(`${trpc()}/auth.logout`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [SESSION_HEADER]: '1', cookie: pair },
    });
    expect(logout.status).toBe(200);
    expect(cookieOf(logout)).toMatch(/^coderunner_session=; Max-Age=0;/);
  });

  it('the cookie is Secure when the request came over https through a trusted proxy, never on a forged header', async () => {
    const email = 'secure@example.com';
    await createClient({ url: trpc() }).auth.register.mutate({ email, password: PASSWORD });
    const login = (url: string) =>
      fetch(`${url}/auth.login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', [SESSION_HEADER]: '1', 'x-forwarded-proto': 'https' },
        body: JSON.stringify({ json: { email, password: PASSWORD } }),
      });
    // No TRUST_PROXY (the default): X-Forwarded-Proto from the TCP peer is not believed.
    expect(cookieOf(await login(trpc()))).not.toMatch(/; Secure/);
    // TRUST_PROXY=loopback: a local TLS-terminating proxy says the request came over https. (A server
    // process of its own: the models are bound to one Sequelize instance per process.)
    const proxied = await startServerProcess({
      port: await freePort(),
      env: {
        DATABASE_URL: db.url,
        WORKER_ENABLED: 'false',
        CODERUNNER_AUTH_SECRET: 'an-http-test-secret-of-enough-length!!',
        TRUST_PROXY: 'loopback',
      },
    });
    try {
      expect(cookieOf(await login(proxied.trpc))).toMatch(/; Secure/);
    } finally {
      await proxied.stop();
    }
  });

  it('a client that unsubscribes ends its stream without a warning in the log', async () => {
    const { token } = await createClient({ url: trpc() }).auth.register.mutate({
      email: 'unsubscribe@example.com',
      password: PASSWORD,
    });
    const client = createClient({ url: trpc(), token });
    const project = await client.projects.create.mutate({ name: 'watched' });
    const dir = appFolder({ 'package.json': '{"scripts":{"start":"node -e 0"}}' });
    const deployment = await deployFolder(client, project.id, dir);
    await new Promise<void>((resolve, reject) => {
      const sub = client.deployments.watch.subscribe(
        { id: deployment.id },
        {
          onData: () => {
            sub.unsubscribe();
            resolve();
          },
          onError: reject,
        },
      );
    });
    const closed = () => accessLines().find((l) => l.path === '/trpc/deployments.watch');
    await expect.poll(closed, { timeout: 5_000 }).toBeDefined();
    expect(closed()).toMatchObject({ level: 30, msg: 'stream closed by the client' });
    await client.deployments.destroy.mutate({ id: deployment.id });
  });
});

describe('nothing internal or secret leaks', () => {
  it('an unexpected error is INTERNAL_SERVER_ERROR with a request id that is also in the server log', async () => {
    const { token } = await createClient({ url: trpc() }).auth.register.mutate({
      email: 'internal@example.com',
      password: PASSWORD,
    });
    // Break the database under the server: the next list fails inside PostgreSQL.
    await server.deps.sequelize.query('ALTER TABLE projects RENAME TO projects_gone');
    try {
      const res = await fetch(`${trpc()}/projects.list`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(500);
      const text = await res.text();
      const { error } = JSON.parse(text);
      const requestId = error.json.data.requestId as string;
      expect(error.json.message).toBe(`internal error (request id ${requestId})`);
      expect(text).not.toMatch(/relation|SELECT|stack|Sequelize|does not exist/i);
      expect(res.headers.get('x-request-id')).toBe(requestId);
      const logged = logLines.find((l) => l.includes(requestId) && l.includes('unexpected error'));
      expect(logged).toBeDefined();
      expect(logged).toMatch(/relation .*projects.* does not exist/);
      // The request's own access line is at error level too.
      await new Promise((r) => setTimeout(r, 50));
      const line = accessLines().find((l) => l.reqId === requestId);
      expect(line).toMatchObject({ level: 50, status: 500, msg: 'request failed' });
    } finally {
      await server.deps.sequelize.query('ALTER TABLE projects_gone RENAME TO projects');
    }
  });

  it('no log line contains a password or a token', async () => {
    const { token } = await createClient({ url: trpc() }).auth.register.mutate({
      email: 'logs@example.com',
      password: PASSWORD,
    });
    await createClient({ url: trpc(), token }).auth.me.query();
    expect(logLines.length).toBeGreaterThan(5);
    for (const line of logLines) {
      expect(line).not.toContain(PASSWORD);
      expect(line).not.toContain(token);
    }
  });
});

describe('the request log', () => {
  it('one line per request with its id (also in x-request-id), method, path without the query, status and time', async () => {
    const secretInput = encodeURIComponent(JSON.stringify({ json: { email: 'query@example.com' } }));
    const res = await fetch(`${trpc()}/projects.list?input=${secretInput}`);
    expect(res.status).toBe(401);
    const id = res.headers.get('x-request-id');
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const notFound = await fetch(`${server.url}/no/such/page?x=1`);
    expect(notFound.status).toBe(404);
    await fetch(`${server.url}/healthz`);
    await new Promise((r) => setTimeout(r, 50)); // the line is written when the response closes
    const line = accessLines().find((l) => l.reqId === id);
    expect(line).toMatchObject({ level: 30, method: 'GET', path: '/trpc/projects.list', status: 401 });
    expect(line!.ms).toEqual(expect.any(Number));
    expect(JSON.stringify(accessLines())).not.toContain('query@example.com');
    expect(accessLines().some((l) => l.path === '/no/such/page' && l.status === 404)).toBe(true);
    expect(
      accessLines().some((l) => l.path === '/healthz'),
      'health probes are not logged',
    ).toBe(false);
  });
});
