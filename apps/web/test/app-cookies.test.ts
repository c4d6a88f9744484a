/**
 * Issue #20, item 2: a tenant's app must never get, nor plant, a dashboard user's session. Browsers
 * do not separate cookies by port (Chromium treats localhost:<any port> as the dashboard's site), so
 * an app published at localhost:<its port> would read Bob's `coderunner_session` after a redirect to
 * itself, and could set one for the dashboard's /trpc (session fixation). In a real Chromium, against
 * the real server (bound to 0.0.0.0, the widest a deployment binds it) with a real isolated app.
 */
import http from 'node:http';
import { createClient } from '@coderunner/api/client';
import { packFolder } from '@coderunner/api/pack';
import { APPS_ADDRESS, detectIsolation } from '@coderunner/sandbox';
import type { BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appFolder,
  ensureDashboardBuilt,
  openBrowser,
  startTestServer,
  type TestServer,
} from './fixtures/server';

const isolated = detectIsolation('auto').mode === 'sandbox';

/**
 * Alice's app: `/` redirects to itself once, then shows the Cookie header it received; `/fix` sets
 * the session cookie it is given (her own token) for the dashboard's API, beside a cookie of its own;
 * `/port` tells its port (what her build log would show her).
 */
const EVIL_APP = {
  'coderunner.json': JSON.stringify({ start: 'node server.js' }),
  'server.js': `require('http').createServer((q, r) => {
  const url = new URL(q.url, 'http://x');
  if (url.pathname === '/port') return r.end(String(process.env.PORT));
  if (url.pathname === '/fix') {
    r.setHeader('set-cookie', [
      'coderunner_session=' + url.searchParams.get('token') + '; Path=/trpc',
      'app_pref=dark; Path=/',
    ]);
    return r.end('fixed');
  }
  if (!url.searchParams.has('again')) { r.writeHead(302, { location: '/?again=1' }); return r.end(); }
  r.setHeader('content-type', 'text/plain');
  r.end('saw cookies: [' + (q.headers.cookie || '') + ']');
}).listen(process.env.PORT, '127.0.0.1');`,
};

let server: TestServer;
let bob: { context: BrowserContext; close(): Promise<void> };
let aliceToken = '';
let deploymentId = '';
let appPort = 0;

/** GET through the server's proxy from Node (Node does not resolve *.localhost): connect to 127.0.0.1, send Host. */
function getViaProxy(pathName: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(
        {
          host: '127.0.0.1',
          port: server.port,
          path: pathName,
          headers: { host: `${deploymentId}.localhost:${server.port}` },
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => {
            body += d;
          });
          res.on('end', () => resolve(body));
        },
      )
      .on('error', reject);
  });
}

/**
 * Opens `url` in a fresh tab of Bob's browser (a tab left on an error page interrupts the next
 * navigation): the status, final URL and text, or null when nothing answers (connection refused).
 */
async function visit(url: string): Promise<{ status: number; url: string; text: string } | null> {
  const page = await bob.context.newPage();
  try {
    const res = await page.goto(url, { timeout: 30_000 });
    return { status: res?.status() ?? 0, url: page.url(), text: (await page.textContent('body')) ?? '' };
  } catch (err) {
    if (/ERR_CONNECTION_REFUSED|ERR_ADDRESS_UNREACHABLE|ERR_CONNECTION_RESET/.test(String(err))) return null;
    throw err;
  } finally {
    await page.close();
  }
}

beforeAll(async () => {
  ensureDashboardBuilt();
  server = await startTestServer({ HOST: '0.0.0.0' });
  // Alice deploys her app through the API, as the CLI would.
  const anon = createClient({ url: `http://127.0.0.1:${server.port}/trpc` });
  aliceToken = (await anon.auth.register.mutate({ email: 'alice@example.com', password: 'alice password' }))
    .token;
  const alice = createClient({ url: `http://127.0.0.1:${server.port}/trpc`, token: aliceToken });
  const projectId = (await alice.projects.create.mutate({ name: 'alice-secret-project' })).id;
  const form = new FormData();
  form.set('projectId', projectId);
  form.set(
    'source',
    new Blob([new Uint8Array((await packFolder(appFolder(EVIL_APP))).archive)]),
    'source.tar.gz',
  );
  deploymentId = (await alice.deployments.create.mutate(form)).id;
  for (const deadline = Date.now() + 180_000; ; ) {
    const d = await alice.deployments.get.query({ id: deploymentId });
    if (d.status === 'RUNNING') break;
    if (d.status === 'FAILED' || Date.now() > deadline) throw new Error(`Alice's app is ${d.status}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  appPort = Number(await getViaProxy('/port'));
  expect(appPort).toBeGreaterThan(0);

  // Bob signs in to the dashboard in his browser.
  bob = await openBrowser();
  const page = await bob.context.newPage();
  await page.goto(server.url);
  await page.getByRole('button', { name: 'Create an account' }).click();
  await page.getByLabel('Email').fill('bob@example.com');
  await page.getByLabel('Password').fill('a long passphrase');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('heading', { name: 'Projects', level: 1 }).waitFor();
  await page.close();
  const cookies = await bob.context.cookies(server.url);
  expect(cookies.some((c) => c.name === 'coderunner_session')).toBe(true);
});

afterAll(async () => {
  await bob?.close();
  await server?.stop();
});

describe("a tenant's app and the dashboard's session", () => {
  it.skipIf(!isolated)(
    "an app is not reachable on the dashboard's host; where it is, it never sees the session cookie",
    async () => {
      // Bob follows Alice's links: her port on the dashboard's host name and address, her port on
      // the apps' address, her URL through the proxy. Wherever the app answers, after its redirect to
      // itself, it has seen no session cookie.
      const onDashboardHost = [`http://localhost:${appPort}/`, `http://127.0.0.1:${appPort}/`];
      const elsewhere = [
        `http://${APPS_ADDRESS}:${appPort}/`,
        `http://${deploymentId}.localhost:${server.port}/`,
      ];
      const seen: Record<string, Awaited<ReturnType<typeof visit>>> = {};
      for (const url of [...onDashboardHost, ...elsewhere]) {
        seen[url] = await visit(url);
        expect(seen[url]?.text ?? '', url).not.toContain('coderunner_session');
      }
      // It answers only away from the dashboard's host.
      for (const url of onDashboardHost) expect(seen[url], url).toBeNull();
      for (const url of elsewhere) {
        expect(seen[url], url).toMatchObject({ status: 200, text: expect.stringMatching(/^saw cookies: /) });
        expect(seen[url]!.url, url).toContain('again=1');
      }
    },
  );

  it.skipIf(!isolated)(
    "an app cannot plant a session cookie for the dashboard's API (session fixation)",
    async () => {
      const fix = `/fix?token=${encodeURIComponent(aliceToken)}`;
      for (const url of [
        `http://localhost:${appPort}${fix}`,
        `http://127.0.0.1:${appPort}${fix}`,
        `http://${APPS_ADDRESS}:${appPort}${fix}`,
        `http://${deploymentId}.localhost:${server.port}${fix}`,
      ])
        await visit(url);
      // The dashboard's API still gets Bob's session, not Alice's: he sees his (empty) list.
      const trpcCookies = await bob.context.cookies(`${server.url}/trpc/projects.list`);
      expect(trpcCookies.filter((c) => c.value === aliceToken)).toEqual([]);
      const page = await bob.context.newPage();
      await page.goto(server.url);
      await page.getByRole('heading', { name: 'Projects', level: 1 }).waitFor();
      await page.getByText('No projects yet').waitFor();
      expect(await page.textContent('body')).not.toContain('alice-secret-project');
      await page.close();
    },
  );

  it("the server serves no dashboard and no API on the apps' address", async () => {
    const res = await visit(`http://${APPS_ADDRESS}:${server.port}/`);
    expect(res?.status).toBe(421);
    expect(res?.text).toContain('reserved for apps');
    const api = await visit(`http://${APPS_ADDRESS}:${server.port}/trpc/projects.list`);
    expect(api?.status).toBe(421);
    // Its own address still serves it.
    expect((await visit(`${server.url}/healthz`))?.status).toBe(200);
  });
});
