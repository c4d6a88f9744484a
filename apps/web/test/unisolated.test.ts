/**
 * The dashboard on a server whose apps run unisolated: a banner on every page (driven by
 * system.info), and the refused second sign-up's message; on a server that isolates, no banner.
 */
import fs from 'node:fs';
import path from 'node:path';
import { detectIsolation } from '@coderunner/sandbox';
import type { Page } from 'playwright-core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ARTIFACTS,
  ensureDashboardBuilt,
  openBrowser,
  startTestServer,
  type TestServer,
} from './fixtures/server';

const SHOTS = path.join(ARTIFACTS, 'unisolated');
const BANNER = 'Apps on this server are not isolated from each other.';
const cleanups: (() => Promise<void>)[] = [];

beforeAll(() => {
  fs.mkdirSync(SHOTS, { recursive: true });
  ensureDashboardBuilt();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(env: Record<string, string>): Promise<TestServer> {
  const s = await startTestServer(env);
  cleanups.push(() => s.stop());
  return s;
}

async function browserPage(): Promise<Page> {
  const browser = await openBrowser();
  cleanups.push(() => browser.close());
  return browser.context.newPage();
}

/** Opens the dashboard and waits until it has asked system.info (the banner's source). */
async function open(page: Page, url: string) {
  const info = page.waitForResponse((r) => r.url().includes('system.info'));
  await page.goto(url);
  await info;
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
}

async function trySignUp(page: Page, email: string) {
  await page.getByRole('button', { name: 'Create an account' }).click();
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill('a long passphrase');
  await page.getByRole('button', { name: 'Sign up' }).click();
}

describe('a server without isolation', () => {
  it('shows a banner on every page, and the second sign-up is refused with the reason', async () => {
    // Unisolated, and without the test servers' usual opt-in to open sign-up.
    const s = await server({ CODERUNNER_ISOLATION: 'none', CODERUNNER_UNISOLATED_OPEN_SIGNUP: '' });
    const alice = await browserPage();
    await open(alice, s.url);
    const banner = alice.getByRole('alert').filter({ hasText: BANNER });
    await banner.waitFor();
    expect(await banner.textContent()).toContain(
      'Sign-up is closed after the first account until the operator turns isolation on.',
    );
    await alice.screenshot({ path: path.join(SHOTS, '1-banner-signed-out.png'), fullPage: true });

    await trySignUp(alice, 'alice@example.com');
    await alice.getByRole('heading', { name: 'Projects', level: 1 }).waitFor();
    expect(await banner.isVisible()).toBe(true);
    await alice.screenshot({ path: path.join(SHOTS, '2-banner-signed-in.png'), fullPage: true });

    const bob = await browserPage();
    await open(bob, s.url);
    await trySignUp(bob, 'bob@example.com');
    const refused = bob.locator('p.error');
    await refused.waitFor();
    expect(await refused.textContent()).toMatch(
      /^Sign-up is closed: this server runs apps without tenant isolation, .*CODERUNNER_UNISOLATED_OPEN_SIGNUP=i-accept-that-users-can-read-each-other$/,
    );
    expect(await bob.getByRole('heading', { name: 'Projects', level: 1 }).count()).toBe(0);
    await bob.screenshot({ path: path.join(SHOTS, '3-sign-up-refused.png'), fullPage: true });
  });

  it('says in the banner that sign-up is open when the operator accepted the risk', async () => {
    const s = await server({ CODERUNNER_ISOLATION: 'none' }); // the fixture's opt-in
    const page = await browserPage();
    await open(page, s.url);
    const banner = page.getByRole('alert').filter({ hasText: BANNER });
    await banner.waitFor();
    expect(await banner.textContent()).toContain(
      'Sign-up is open to anyone: the operator accepted this risk.',
    );
  });
});

describe.skipIf(detectIsolation('auto').mode !== 'sandbox')('a server that isolates apps', () => {
  it('shows no banner', async () => {
    const s = await server({ CODERUNNER_ISOLATION: 'sandbox' });
    const page = await browserPage();
    await open(page, s.url);
    expect(await page.getByText(BANNER).count()).toBe(0);
  });
});
