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
  server = await startTestServer();
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
        "console.log('hello app listening');",
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

    await page
      .getByRole('log', { name: 'Log lines' })
      .getByText('hello app listening')
      .waitFor({ timeout: 30_000 });
    await shot(page, 'logs');

    await page.getByRole('button', { name: 'Stop' }).click();
    await page.getByRole('button', { name: 'Stop the app' }).click();
    await page.locator('.facts .status', { hasText: 'STOPPED' }).waitFor({ timeout: 60_000 });
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
