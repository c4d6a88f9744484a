/**
 * The deployment page's usage chart in a real browser against the real server: a running app that
 * holds 100 MB, its memory and CPU drawn over the last hour beside the limit, as the server samples
 * them (every 10 s). A screenshot goes to this test's temp folder.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createClient } from '@coderunner/api/client';
import { packFolder } from '@coderunner/api/pack';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import {
  appFolder,
  ensureDashboardBuilt,
  openBrowser,
  startTestServer,
  type TestServer,
} from './fixtures/server';

const EMAIL = 'charts@example.com';
const PASSWORD = 'a long passphrase';
let server: TestServer;
let browser: Awaited<ReturnType<typeof openBrowser>>;
let shots: string;

/** 100 MB held from /alloc on (written, so resident). */
const APP = {
  'package.json': JSON.stringify({ scripts: { start: 'node server.js' } }),
  'server.js': `let held = null;
require('http').createServer((q, r) => {
  if (q.url === '/alloc') held = Buffer.alloc(100 * 1024 * 1024, 7);
  r.end('ok');
}).listen(process.env.PORT, '127.0.0.1');`,
};

/** GET through the server's proxy with the app's Host (Node does not resolve *.localhost). */
function get(url: string): Promise<number> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: u.port, path: u.pathname, headers: { host: u.host } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject);
  });
}

beforeAll(async () => {
  shots = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-usage-chart-'));
  ensureDashboardBuilt();
  server = await startTestServer();
  browser = await openBrowser();
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  console.log(`usage chart screenshots: ${shots}`);
});

async function signUp(page: Page) {
  await page.goto(server.url);
  await page.getByRole('button', { name: 'Create an account' }).click();
  await page.getByLabel('Email').fill(EMAIL);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('heading', { name: 'Projects', level: 1 }).waitFor();
}

describe('the usage chart', () => {
  it("draws the last hour's memory and CPU of a running app, with the limit, refreshed as samples come", async () => {
    const page = await browser.context.newPage();
    onTestFailed(async () => {
      await page.screenshot({ path: path.join(shots, 'FAILED.png'), fullPage: true });
    });
    await signUp(page);
    const { token } = await createClient({ url: `${server.url}/trpc` }).auth.login.mutate({
      email: EMAIL,
      password: PASSWORD,
    });
    const client = createClient({ url: `${server.url}/trpc`, token });
    const project = await client.projects.create.mutate({ name: 'charts' });
    const form = new FormData();
    form.set('projectId', project.id);
    form.set(
      'source',
      new Blob([new Uint8Array((await packFolder(appFolder(APP))).archive)]),
      'source.tar.gz',
    );
    const { id } = await client.deployments.create.mutate(form);
    let d = await client.deployments.get.query({ id });
    for (const deadline = Date.now() + 120_000; !['RUNNING', 'FAILED'].includes(d.status); ) {
      if (Date.now() > deadline) throw new Error(`deployment is ${d.status}`);
      await new Promise((r) => setTimeout(r, 300));
      d = await client.deployments.get.query({ id });
    }
    expect(d.status).toBe('RUNNING');
    expect(await get(`${d.publicUrl}alloc`)).toBe(200);

    await page.goto(`${server.url}/deployments/${id}`);
    await page.getByRole('heading', { name: 'Usage' }).waitFor();
    const memory = page.locator('.usage-chart.memory svg');
    // The page asks again every 10 s; the server samples every 10 s: two points within about 30 s.
    await expect
      .poll(async () => Number((await memory.getAttribute('data-points').catch(() => null)) ?? 0), {
        timeout: 60_000,
        interval: 1_000,
      })
      .toBeGreaterThanOrEqual(2);
    const line = await memory.locator('polyline.series').getAttribute('points');
    const coords = line!.trim().split(/\s+/);
    expect(coords.length).toBeGreaterThanOrEqual(2);
    for (const c of coords) expect(c).toMatch(/^\d+(\.\d+)?,\d+(\.\d+)?$/);
    // The CPU chart has a point for each sample after the first.
    expect(
      Number(await page.locator('.usage-chart.cpu svg').getAttribute('data-points')),
    ).toBeGreaterThanOrEqual(1);
    const summary = await page.locator('.card.usage p').first().textContent();
    expect(summary).toMatch(/^Memory \d+ MB/);
    if (d.usage?.memoryLimitBytes) {
      // Isolated: the limit is drawn as a line, and named.
      await expect.poll(() => memory.locator('line.limit').count()).toBe(1);
      expect(await memory.getAttribute('aria-label')).toMatch(/limit \d+ MB/);
      expect(summary).toMatch(/^Memory \d+ MB of \d+ MB \(peak \d+ MB\)/);
    }
    const file = path.join(shots, 'usage-chart.png');
    await page.locator('.card.usage').screenshot({ path: file });
    expect(fs.statSync(file).size).toBeGreaterThan(1_000);
    await page.screenshot({ path: path.join(shots, 'deployment-page.png'), fullPage: true });

    // Stopped elsewhere: the page follows the status, and the usage card goes.
    await client.deployments.stop.mutate({ id });
    await page.locator('.facts .status', { hasText: 'STOPPED' }).waitFor({ timeout: 30_000 });
    expect(await page.locator('.card.usage').count()).toBe(0);
  }, 240_000);
});
