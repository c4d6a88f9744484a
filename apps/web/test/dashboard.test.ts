/**
 * The dashboard in a real browser against the real server: the whole path a person takes, isolation
 * between users, and the browser session's defences (HttpOnly cookie, CSRF, CSP). Screenshots of
 * each step go to apps/web/test-artifacts/ (gitignored); figures (time to interactive, folder to
 * RUNNING) are printed and written to test-artifacts/figures.json.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import {
  ARTIFACTS,
  appFolder,
  ensureDashboardBuilt,
  openBrowser,
  startTestServer,
  type TestServer,
} from './fixtures/server';

let server: TestServer;
let alice: { context: BrowserContext; close(): Promise<void> };
const figures: Record<string, number> = {};
let step = 0;

async function shot(page: Page, name: string) {
  step++;
  await page.screenshot({
    path: path.join(ARTIFACTS, `${String(step).padStart(2, '0')}-${name}.png`),
    fullPage: true,
  });
}

async function signUp(page: Page, email: string) {
  await page.goto(server.url);
  await page.getByRole('button', { name: 'Create an account' }).click();
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill('a long passphrase');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('heading', { name: 'Projects', level: 1 }).waitFor();
}

/** Calls the API from Node with the given headers (no browser, no SameSite): what the server itself allows. */
async function trpcPost(pathName: string, body: string | FormData, headers: Record<string, string>) {
  return fetch(`${server.url}/trpc/${pathName}`, { method: 'POST', body, headers });
}

/** GET with Node's http (fetch may not set Host), resolving `*.localhost` to loopback as browsers do. */
function get(url: string): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    http
      .get(
        { host: '127.0.0.1', port: u.port, path: u.pathname, headers: { host: u.host, accept: 'text/html' } },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d) => {
            body += d;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      )
      .on('error', reject);
  });
}

beforeAll(async () => {
  fs.rmSync(ARTIFACTS, { recursive: true, force: true });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  ensureDashboardBuilt();
  // A replaced deployment stops 2 s after the switch (not 30), so a test can start it again.
  server = await startTestServer({ CODERUNNER_REDEPLOY_DRAIN_S: '2' });
  alice = await openBrowser();
});

afterAll(async () => {
  fs.writeFileSync(path.join(ARTIFACTS, 'figures.json'), `${JSON.stringify(figures, null, 2)}\n`);
  console.log('dashboard figures:', figures);
  await alice?.close();
  await server?.stop();
});

describe('the dashboard, as a person uses it', () => {
  let projectId = '';

  it('serves the dashboard at / with a CSP allowing only its own scripts; deployment hosts still reach apps', async () => {
    const res = await fetch(`${server.url}/`, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('<div id="root">');
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    // A deployment's host is never answered with the dashboard.
    const app = await get(`http://00000000-0000-4000-8000-000000000000.localhost:${server.port}/`);
    expect(app.status).toBe(503);
    expect(app.body).toContain('is not running');
  });

  it('sign up → create a project → deploy a folder → RUNNING → open the URL → a log line → stop → destroy', async () => {
    const page = await alice.context.newPage();
    onTestFailed(async () => {
      await shot(page, 'FAILED');
      fs.writeFileSync(path.join(ARTIFACTS, 'FAILED.html'), await page.content());
    });
    const cspErrors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') cspErrors.push(m.text());
    });
    page.on('pageerror', (e) => cspErrors.push(e.message));

    const t0 = Date.now();
    await page.goto(server.url);
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    figures.timeToInteractiveMs = await page.evaluate(() => Math.round(performance.now()));
    figures.timeToInteractiveWallMs = Date.now() - t0;
    await shot(page, 'sign-in');

    await page.getByRole('button', { name: 'Create an account' }).click();
    await page.getByLabel('Email').fill('alice@example.com');
    await page.getByLabel('Password').fill('short');
    await page.getByRole('button', { name: 'Sign up' }).click();
    // A validation error shows next to its field.
    await expect
      .poll(() => page.locator('.field-error').textContent())
      .toMatch(/Password must be at least 8/);
    await shot(page, 'sign-up-validation');
    await page.getByLabel('Password').fill('a long passphrase');
    await page.getByRole('button', { name: 'Sign up' }).click();
    await page.getByRole('heading', { name: 'Projects', level: 1 }).waitFor();
    await page.getByText('No projects yet').waitFor();
    await shot(page, 'projects-empty');

    // The session is a cookie page scripts cannot read.
    const cookies = await alice.context.cookies(server.url);
    const session = cookies.find((c) => c.name === 'coderunner_session');
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict', secure: false });
    expect(await page.evaluate(() => document.cookie)).toBe('');

    await page.getByLabel('Name').fill('hello');
    await page.getByLabel('Description (optional)').fill('deployed from a browser');
    await page.getByRole('button', { name: 'Create project' }).click();
    await page.getByRole('heading', { name: 'hello', level: 1 }).waitFor();
    projectId = page.url().split('/').pop()!;
    await page.getByText('Nothing deployed yet').waitFor();
    await shot(page, 'project-created');

    const dir = appFolder({
      'package.json': JSON.stringify({ name: 'hello', private: true, scripts: { start: 'node server.js' } }),
      'server.js': [
        "const fs = require('fs');",
        // Coloured, as many frameworks print: the log view renders the colour, not the escape.
        "console.log('\\x1b[32mhello app listening\\x1b[39m');",
        'require("http").createServer((req, res) => res.end(',
        "  req.url === '/files'",
        "    ? ['server.js', '.gitignore', 'secret.txt', 'notes.md', 'build', 'node_modules/left-pad', '.git']",
        "        .filter((f) => fs.existsSync(f)).join(',')",
        "    : 'hi from the dashboard app'",
        ')).listen(process.env.PORT, "127.0.0.1");',
      ].join('\n'),
      '.gitignore': 'secret.txt\nbuild/\n',
      '.coderunnerignore': 'notes.md\n',
      'secret.txt': 'do not upload',
      'notes.md': 'nor this',
      'build/out.js': 'ignored folder',
      'node_modules/left-pad/index.js': 'module.exports = 1;',
      '.git/HEAD': 'ref: refs/heads/main',
    });
    const chosenAt = Date.now();
    await page.getByLabel('Folder').setInputFiles(dir);
    await page.getByText(/Selected folder/).waitFor();
    await page.getByRole('button', { name: 'Deploy' }).click();
    await page.getByRole('heading', { name: /^Deployment / }).waitFor();
    await shot(page, 'deployment-started');
    await page.locator('.facts .status', { hasText: 'RUNNING' }).waitFor({ timeout: 120_000 });
    figures.folderToRunningMs = Date.now() - chosenAt;
    await shot(page, 'deployment-running');

    const url = await page.getByRole('link', { name: /localhost/ }).getAttribute('href');
    expect(url).toMatch(/^http:\/\/[0-9a-f-]{36}\.localhost:\d+\/$/);
    const appPage = await alice.context.newPage();
    await appPage.goto(url!);
    expect(await appPage.textContent('body')).toBe('hi from the dashboard app');
    await shot(appPage, 'app-answers');
    // Packed in the browser by the upload rules: ignored files and folders never arrived.
    await appPage.goto(`${url}files`);
    expect(await appPage.textContent('body')).toBe('server.js,.gitignore');
    await appPage.close();

    const logLines = page.getByRole('log', { name: 'Log lines' });
    await logLines.getByText('hello app listening').waitFor({ timeout: 30_000 });
    const coloured = logLines.locator('span.ansi', { hasText: 'hello app listening' });
    expect(await coloured.evaluate((el) => getComputedStyle(el).color)).toBe('rgb(0, 187, 0)');
    const shown = (await logLines.textContent()) ?? '';
    expect(shown.includes('\u001b') || shown.includes('[32m')).toBe(false);
    await shot(page, 'logs');

    await page.getByRole('button', { name: 'Stop' }).click();
    await page.getByRole('button', { name: 'Stop the app' }).click();
    await page.locator('.facts .status', { hasText: 'STOPPED' }).waitFor({ timeout: 60_000 });
    // The log view no longer claims to follow a deployment that writes no more.
    await page.getByText('The deployment stopped: its log ends here.').waitFor({ timeout: 30_000 });
    await shot(page, 'stopped');

    await page.getByRole('button', { name: 'Destroy' }).click();
    await shot(page, 'destroy-confirmation');
    await page.getByRole('button', { name: 'Destroy for good' }).click();
    await page.locator('.facts .status', { hasText: 'DESTROYED' }).waitFor({ timeout: 60_000 });
    await shot(page, 'destroyed');

    // Back on the project: the deployment is listed with its status as text.
    await page.getByRole('link', { name: 'Back to the project' }).click();
    await page.getByRole('list', { name: 'Deployments, newest first' }).getByText('DESTROYED').waitFor();
    // At phone width the page still fits.
    await page.setViewportSize({ width: 375, height: 800 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);
    await shot(page, 'project-phone-width');
    expect(cspErrors.filter((e) => /Content Security Policy/i.test(e))).toEqual([]);
    await page.close();
  });

  it('a second person sees none of the first one’s projects, and cannot open them by URL', async () => {
    expect(projectId).toMatch(/^[0-9a-f-]{36}$/);
    const bob = await openBrowser();
    try {
      const page = await bob.context.newPage();
      await signUp(page, 'bob@example.com');
      await page.getByText('No projects yet').waitFor();
      await page.goto(`${server.url}/projects/${projectId}`);
      await page.getByRole('heading', { name: 'Project not found' }).waitFor();
      await shot(page, 'second-user-not-found');
    } finally {
      await bob.close();
    }
  });

  it('a cross-site form post changes nothing, even with the session cookie attached', async () => {
    // From another site (127.0.0.1 is not the same site as localhost), a page posts a form at the API.
    const evil = http.createServer((_req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(`<form id="f" method="POST" enctype="multipart/form-data"
        action="${server.url}/trpc/projects.create"><input name="name" value="evil"></form>
        <form id="g" method="POST" enctype="text/plain"
        action="${server.url}/trpc/projects.create"><input name='{"json":{"name":"evil2","x":"' value='"}}'></form>
        <script>document.getElementById(location.hash === '#g' ? 'g' : 'f').submit()</script>`);
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    const evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}/`;
    try {
      const page = await alice.context.newPage();
      for (const hash of ['', '#g']) {
        const answered = page.waitForResponse((r) => r.url().includes('/trpc/projects.create'));
        await page.goto(`${evilUrl}${hash}`);
        expect((await answered).status()).toBeGreaterThanOrEqual(400);
      }
      await page.goto(server.url);
      await page.getByRole('list', { name: 'Projects' }).getByText('hello').waitFor();
      expect(await page.getByText(/evil/).count()).toBe(0);
      await page.close();
    } finally {
      evil.close();
    }
    // Without SameSite's help (a client that sends the cookie anyway), the cookie alone is not a session.
    const cookie = (await alice.context.cookies(server.url)).find((c) => c.name === 'coderunner_session')!;
    const form = new FormData();
    form.set('name', 'evil3');
    const refused = await trpcPost('projects.create', form, { cookie: `coderunner_session=${cookie.value}` });
    expect(refused.status).toBe(401);
    const json = await trpcPost('projects.create', JSON.stringify({ json: { name: 'evil4' } }), {
      cookie: `coderunner_session=${cookie.value}`,
      'content-type': 'application/json',
    });
    expect(json.status).toBe(401);
    // With the dashboard's header the same cookie works (so the refusals above were the header's doing).
    const me = await fetch(`${server.url}/trpc/auth.me`, {
      headers: { cookie: `coderunner_session=${cookie.value}`, 'x-coderunner-session': '1' },
    });
    expect(me.status).toBe(200);
  });

  it('signing out clears the cookie and shows the sign-in form', async () => {
    const page = await alice.context.newPage();
    await page.goto(`${server.url}/account`);
    await page.getByRole('heading', { name: 'Account' }).waitFor();
    await page.getByText(/Projects: 1 of 3/).waitFor();
    await shot(page, 'account');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    expect((await alice.context.cookies(server.url)).some((c) => c.name === 'coderunner_session')).toBe(
      false,
    );
    await page.close();
  });
});

describe('releases and environment variables, from the project page', () => {
  let carol: { context: BrowserContext; close(): Promise<void> };
  let page: Page;
  let projectId = '';
  let projectUrl = '';
  const ids = { v1: '', v2: '', v3: '', v4: '' };
  const short = (id: string) => id.slice(0, 8);
  const rows = () => page.getByRole('list', { name: 'Deployments, newest first' });
  const row = (id: string) =>
    rows()
      .getByRole('listitem')
      .filter({ hasText: short(id) });
  const serving = () => page.getByRole('region', { name: 'Project URL' }).locator('.serving');
  /** What the project URL answers now (the proxy's per-project cache follows a switch within 5 s). */
  const served = async () => (await get(projectUrl)).body;

  /** Deploys an app answering `<version> <GREETING>` from the project page; on its page once RUNNING. */
  async function deployVersion(version: string): Promise<string> {
    const dir = appFolder({
      'package.json': JSON.stringify({ name: 'shop', private: true, scripts: { start: 'node server.js' } }),
      'server.js': `require('http').createServer((req, res) => res.end('${version} ' + (process.env.GREETING ?? '-'))).listen(process.env.PORT, '127.0.0.1');`,
    });
    await page.getByLabel('Folder').setInputFiles(dir);
    await page.getByText(/Selected folder/).waitFor();
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
    await page.waitForURL(/\/deployments\/[0-9a-f-]{36}$/);
    await page.locator('.facts .status', { hasText: 'RUNNING' }).waitFor({ timeout: 120_000 });
    return page.url().split('/').pop()!;
  }

  async function backToProject() {
    await page.getByRole('link', { name: 'Back to the project' }).click();
    await page.getByRole('region', { name: 'Project URL' }).waitFor();
  }

  /** The server's own answer to env.set, called from Node with this browser's session. */
  async function serverMessageForSet(vars: Record<string, string>): Promise<string> {
    const cookie = (await carol.context.cookies(server.url)).find((c) => c.name === 'coderunner_session')!;
    const res = await trpcPost('env.set', JSON.stringify({ json: { projectId, vars } }), {
      cookie: `coderunner_session=${cookie.value}`,
      'x-coderunner-session': '1',
      'content-type': 'application/json',
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { json: { message: string; data: { code: string } } } };
    expect(body.error.json.data.code).toBe('BAD_REQUEST');
    return body.error.json.message;
  }

  beforeAll(async () => {
    carol = await openBrowser();
    page = await carol.context.newPage();
  });
  afterAll(async () => {
    await carol?.close();
  });
  // Each step leaves the page where the next one starts: a failure shows where it stopped.
  const onFailure = () =>
    onTestFailed(async () => {
      await shot(page, 'FAILED-releases');
      fs.writeFileSync(path.join(ARTIFACTS, 'FAILED-releases.html'), await page.content());
    });

  it('shows the project URL (503 before anything runs), then the deployment it serves', async () => {
    onFailure();
    await signUp(page, 'carol@example.com');
    await page.getByLabel('Name').fill('shop front');
    await page.getByRole('button', { name: 'Create project' }).click();
    await page.getByRole('heading', { name: 'shop front', level: 1 }).waitFor();
    projectId = page.url().split('/').pop()!;

    const card = page.getByRole('region', { name: 'Project URL' });
    const link = card.getByRole('link', { name: /localhost/ });
    projectUrl = (await link.getAttribute('href'))!;
    expect(projectUrl).toBe(
      `http://shop-front-${projectId.replace(/-/g, '').slice(0, 10)}.localhost:${server.port}/`,
    );
    expect(await link.textContent()).toBe(projectUrl);
    expect(await link.getAttribute('target')).toBe('_blank');
    await carol.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    await card.getByRole('button', { name: 'Copy URL' }).click();
    await card.getByRole('status').getByText('Copied the project URL.').waitFor();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(projectUrl);
    expect(await serving().textContent()).toBe('No deployment is running: the URL answers 503.');
    expect((await get(projectUrl)).status).toBe(503);
    await shot(page, 'project-url-nothing-running');

    ids.v1 = await deployVersion('v1');
    await page.locator('.facts .status-current').waitFor();
    await backToProject();
    await expect.poll(() => serving().textContent()).toContain(`Serving deployment ${short(ids.v1)}`);
    await row(ids.v1).locator('.status-current').waitFor();
    await expect.poll(served, { timeout: 15_000 }).toBe('v1 -');
    // The project URL opens in a new tab and shows the app.
    const [tab] = await Promise.all([carol.context.waitForEvent('page'), link.click()]);
    await tab!.waitForLoadState();
    expect(await tab!.textContent('body')).toBe('v1 -');
    await tab!.close();
  });

  it('deploying again marks the newer deployment current; the URL serves it', async () => {
    onFailure();
    ids.v2 = await deployVersion('v2');
    await page.locator('.facts .status-current').waitFor();
    await backToProject();
    await row(ids.v2).locator('.status-current').waitFor();
    expect(await row(ids.v1).locator('.status-current').count()).toBe(0);
    await expect.poll(() => serving().textContent()).toContain(`Serving deployment ${short(ids.v2)}`);
    await expect.poll(served, { timeout: 15_000 }).toBe('v2 -');
    // The current one offers a redeploy but no rollback; the older one both.
    expect(await row(ids.v2).getByRole('button', { name: 'Roll back to this' }).count()).toBe(0);
    await row(ids.v2).getByRole('button', { name: 'Redeploy' }).waitFor();
    await row(ids.v1).getByRole('button', { name: 'Roll back to this' }).waitFor();
    await shot(page, 'project-two-deployments');
  });

  it('starting the replaced one is refused with the server’s advice; "Roll back to this" serves it again', async () => {
    onFailure();
    await row(ids.v1)
      .getByRole('link', { name: /Deployment/ })
      .click();
    // Replaced, it drains (2 s here), then stops.
    await page.locator('.facts .status', { hasText: 'STOPPED' }).waitFor({ timeout: 60_000 });
    await page.getByRole('button', { name: 'Start' }).click();
    await expect
      .poll(() => page.getByRole('alert').textContent())
      .toBe(
        `Deployment ${ids.v2} is newer and running; to serve this version again, roll back to it (coderunner rollback ${ids.v1})`,
      );
    await shot(page, 'start-refused-roll-back-instead');

    await backToProject();
    await row(ids.v1).getByRole('button', { name: 'Roll back to this' }).click();
    // Asked first; this app has no database, so nothing is said about one.
    await row(ids.v1)
      .getByText("Roll back to this deployment's code and the variables it ran with?")
      .waitFor();
    await row(ids.v1).getByRole('button', { name: 'Roll back', exact: true }).click();
    await page.waitForURL(
      (u) => /\/deployments\/[0-9a-f-]{36}$/.test(u.pathname) && !u.pathname.endsWith(ids.v1),
    );
    ids.v3 = page.url().split('/').pop()!;
    expect([ids.v1, ids.v2]).not.toContain(ids.v3);
    await page
      .getByRole('log', { name: 'Log lines' })
      .getByText(`rollback to deployment ${ids.v1}`)
      .waitFor();
    await page.locator('.facts .status', { hasText: 'RUNNING' }).waitFor({ timeout: 120_000 });
    await page.locator('.facts .status-current').waitFor();
    await shot(page, 'rolled-back');
    await expect.poll(served, { timeout: 15_000 }).toBe('v1 -');

    await backToProject();
    await row(ids.v3).locator('.status-current').waitFor();
    await expect.poll(() => serving().textContent()).toContain(`Serving deployment ${short(ids.v3)}`);
    expect(await rows().locator('.status-current').count()).toBe(1);
  });

  it('environment variables: add (masked), reveal, the shared rules’ message, redeploy to apply, remove', async () => {
    onFailure();
    const env = page.getByRole('region', { name: 'Environment variables' });
    await env.getByText('redeploy to apply').waitFor();
    await env.getByText('No variables yet.').waitFor();
    expect(await env.getByRole('button', { name: 'Reveal values' }).count()).toBe(0);

    await env.getByLabel('Variable name').fill('GREETING');
    await env.getByLabel('Value').fill('hey there');
    await env.getByRole('button', { name: 'Save variable' }).click();
    const greeting = env.getByRole('table', { name: 'Variables' }).getByRole('row', { name: /GREETING/ });
    await greeting.waitFor();
    expect(await greeting.locator('td').first().textContent()).toBe('••••••');
    expect(await page.content()).not.toContain('hey there');
    await env.getByRole('status').getByText('Saved GREETING. Redeploy to apply').waitFor();
    await shot(page, 'env-masked');

    await env.getByRole('button', { name: 'Reveal values' }).click();
    await greeting.getByText('hey there').waitFor();
    await shot(page, 'env-revealed');
    await env.getByRole('button', { name: 'Hide values' }).click();
    await greeting.getByText('••••••').waitFor();
    expect(await page.content()).not.toContain('hey there');

    // Invalid or reserved names: refused on the page, before any request, with the server's words.
    let sets = 0;
    const countSets = (r: { url(): string }) => {
      if (r.url().includes('env.set')) sets++;
    };
    page.on('request', countSets);
    for (const bad of ['1BAD', 'bad-name', 'PORT', 'CODERUNNER_X']) {
      await env.getByLabel('Variable name').fill(bad);
      await env.getByLabel('Value').fill('x');
      await env.getByRole('button', { name: 'Save variable' }).click();
      const message = await serverMessageForSet({ [bad]: 'x' });
      expect(message).toContain(bad === 'bad-name' ? '"bad-name"' : bad);
      await expect
        .poll(() => env.getByRole('alert').textContent())
        .toBe(message.charAt(0).toUpperCase() + message.slice(1));
      expect(await env.getByLabel('Variable name').getAttribute('aria-invalid')).toBe('true');
    }
    page.off('request', countSets);
    expect(sets).toBe(0);
    await shot(page, 'env-invalid-name');
    await env.getByLabel('Variable name').fill('');
    await env.getByLabel('Value').fill('');

    // The running app still has the old environment; a redeploy of the current deployment applies it.
    expect(await served()).toBe('v1 -');
    await row(ids.v3).getByRole('button', { name: 'Redeploy' }).click();
    await page.waitForURL(
      (u) => /\/deployments\/[0-9a-f-]{36}$/.test(u.pathname) && !u.pathname.endsWith(ids.v3),
    );
    ids.v4 = page.url().split('/').pop()!;
    await page.locator('.facts .status', { hasText: 'RUNNING' }).waitFor({ timeout: 120_000 });
    await expect.poll(served, { timeout: 15_000 }).toBe('v1 hey there');

    await backToProject();
    await row(ids.v4).locator('.status-current').waitFor();
    await greeting.getByRole('button', { name: 'Remove' }).click();
    await env.getByRole('button', { name: 'Remove GREETING' }).click();
    await env.getByText('No variables yet.').waitFor();
    await env.getByRole('status').getByText('Removed GREETING.').waitFor();
    expect(await greeting.count()).toBe(0);
    await shot(page, 'env-removed');

    // At phone width the project page, URL and variables included, still fits.
    await env.getByLabel('Variable name').fill('API_KEY');
    await env.getByLabel('Value').fill('k'.repeat(200));
    await env.getByRole('button', { name: 'Save variable' }).click();
    await env.getByRole('row', { name: /API_KEY/ }).waitFor();
    await env.getByRole('button', { name: 'Reveal values' }).click();
    await env.getByText('k'.repeat(200)).waitFor();
    await page.setViewportSize({ width: 375, height: 800 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);
    await shot(page, 'project-releases-env-phone-width');
  });

  it('a deployment whose app exits at start: why, at the top of its page (the app\'s own error line); no "Roll back to this"', async () => {
    onFailure();
    await page.setViewportSize({ width: 1280, height: 800 });
    const dir = appFolder({
      'package.json': JSON.stringify({ name: 'shop', private: true, scripts: { start: 'node server.js' } }),
      'server.js': `console.log('starting'); console.error('Error: SHOP_SECRET is not set'); process.exit(1);`,
    });
    await page.getByLabel('Folder').setInputFiles(dir);
    await page.getByText(/Selected folder/).waitFor();
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
    await page.waitForURL(/\/deployments\/[0-9a-f-]{36}$/);
    const failed = page.url().split('/').pop()!;
    await page.locator('.facts .status', { hasText: 'FAILED' }).waitFor({ timeout: 120_000 });
    const why = page.locator('.failure');
    await why.getByText('Why it failed').waitFor();
    // The reason the engine gave, then the app's error line (not its other output).
    await expect
      .poll(() => why.locator('.failure-reason').textContent())
      .toMatch(/^the app exited before listening on port \d+\nError: SHOP_SECRET is not set$/);
    // It sits above the facts, where the eye lands first.
    expect(await page.locator('h1 ~ .failure + .facts').count()).toBe(1);
    await page.getByRole('button', { name: 'Redeploy' }).waitFor();
    expect(await page.getByRole('button', { name: 'Roll back to this' }).count()).toBe(0);
    expect(await page.locator('p.hint').textContent()).not.toContain('Roll back');
    await shot(page, 'deployment-failed-reason');

    await backToProject();
    // The list may first show the status it had cached (BUILDING, which offers a rollback): wait for FAILED.
    await row(failed).getByText('FAILED', { exact: true }).waitFor({ timeout: 30_000 });
    await row(failed).getByRole('button', { name: 'Redeploy' }).waitFor();
    expect(await row(failed).getByRole('button', { name: 'Roll back to this' }).count()).toBe(0);
  });
});
