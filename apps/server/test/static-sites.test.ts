/**
 * Static sites and Node versions, end to end over HTTP on the local provider: a build that leaves
 * static files and no server is RUNNING with no app process (no sandbox left), its files served by
 * this server (SPA fallback, cache headers, compression, content types, no traversal) at the
 * deployment's and the project's URL; stop answers 503 and rollback serves the earlier files; an app
 * asking for Node >= 22 runs on it, and the build log names the version.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import type { CodeRunnerClient } from '@coderunner/api/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appFolder,
  type DeployingServer,
  deployFolder,
  logText,
  processesOfSandbox,
  startDeployingServer,
  waitForStatus,
} from './fixtures/deploy-helpers';

let ctx: DeployingServer;
let client: CodeRunnerClient;
let projectId: string;

beforeAll(async () => {
  ctx = await startDeployingServer(
    { CODERUNNER_START_TIMEOUT_S: '30', CODERUNNER_REDEPLOY_DRAIN_S: '1' },
    { email: 'static@example.com', project: 'site' },
  );
  ({ client, projectId } = ctx);
});

afterAll(() => ctx?.close());

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A raw GET through the server (the path exactly as given: no URL normalisation of `..`). */
function get(url: string, rawPath: string, headers: Record<string, string> = {}): Promise<Answer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port: u.port, path: rawPath, headers: { host: u.host, ...headers }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

async function deployAndRun(dir: string) {
  const created = await deployFolder(client, projectId, dir);
  const d = await waitForStatus(client, created.id, ['RUNNING', 'FAILED'], 300_000);
  const log = await logText(client, created.id);
  expect(d.status, log).toBe('RUNNING');
  return { d, log };
}

/** A site built without any package: a build script writes it (what a bundler would leave). */
function builtSite(version: string) {
  const big = 'body { color: black; }\n'.repeat(500);
  return appFolder({
    'package.json': JSON.stringify({ name: 'site', scripts: { build: 'node build.js' } }),
    'build.js': `const fs = require('fs');
fs.mkdirSync('dist/assets', { recursive: true });
fs.writeFileSync('dist/index.html', '<!doctype html><title>${version}</title><script src="/assets/index-D8ZcB2x1.js"></script>');
fs.writeFileSync('dist/assets/index-D8ZcB2x1.js', 'console.log("${version}")');
fs.writeFileSync('dist/assets/style-9f8e7d6c.css', ${JSON.stringify(big)});
fs.writeFileSync('dist/robots.txt', 'User-agent: *');
fs.writeFileSync('dist/.env', 'SECRET=1');
// A link planted by the build: copied out, it would serve a file of the build's sandbox (or worse).
fs.symlinkSync('/etc/passwd', 'dist/passwd.txt');
fs.writeFileSync('secret.txt', 'outside the site');`,
  });
}

describe('a static site', () => {
  let site: { id: string; publicUrl: string | null; runtimeType: string | null };

  it('is RUNNING with no app process and no sandbox; the log says what it serves', async () => {
    const { d, log } = await deployAndRun(builtSite('v1'));
    site = d;
    expect(d.runtimeType).toBe('static');
    expect(log).toMatch(
      /static site: 5 files \(\d+ KB\) from dist\/, served by CodeRunner with no app process/,
    );
    expect(log).toContain('left out 1 links or special files (passwd.txt)');
    // The newest LTS from the registry; when the registry cannot be reached at that moment (CI saw
    // dropped connections through this machine's proxy), the documented fallback: a cached LTS.
    expect(log).toMatch(
      /using Node \d+\.\d+\.\d+ \((the newest LTS; none asked for|newest LTS cached\), from the cache \(the npm registry cannot be reached)/,
    );
    expect(
      await ctx.server.deps.deployments!.engine.provider.list({ metadata: { deploymentId: d.id } }),
    ).toEqual([]);
    // Nothing of it runs on this machine.
    expect(processesOfSandbox(d.id)).toEqual([]);
  });

  it('serves index.html (no-cache), hashed assets for a year, content types, and gzip or brotli', async () => {
    const url = site.publicUrl!;
    const index = await get(url, '/');
    expect(index.status).toBe(200);
    expect(index.headers['content-type']).toMatch(/^text\/html/);
    expect(index.headers['cache-control']).toBe('no-cache');
    expect(index.body.toString()).toContain('<title>v1</title>');

    const js = await get(url, '/assets/index-D8ZcB2x1.js');
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toMatch(/javascript/);
    expect(js.headers['cache-control']).toBe('public, max-age=31536000, immutable');

    const css = await get(url, '/assets/style-9f8e7d6c.css', { 'accept-encoding': 'gzip' });
    expect(css.headers['content-encoding']).toBe('gzip');
    expect(css.headers['content-type']).toMatch(/^text\/css/);
    expect(zlib.gunzipSync(css.body).toString()).toContain('color: black');
    const br = await get(url, '/assets/style-9f8e7d6c.css', { 'accept-encoding': 'br' });
    expect(br.headers['content-encoding']).toBe('br');
    expect(zlib.brotliDecompressSync(br.body).toString()).toContain('color: black');

    const plain = await get(url, '/robots.txt');
    expect(plain.headers['content-type']).toMatch(/^text\/plain/);
    expect(plain.headers['cache-control']).toBe('public, max-age=0, must-revalidate');
  });

  it('answers an SPA route with index.html, a missing file with 404, and refuses traversal and dotfiles', async () => {
    const url = site.publicUrl!;
    const route = await get(url, '/settings/profile?tab=1');
    expect(route.status).toBe(200);
    expect(route.body.toString()).toContain('<title>v1</title>');
    expect(route.headers['cache-control']).toBe('no-cache');
    expect((await get(url, '/assets/missing-12345678.js')).status).toBe(404);
    for (const p of [
      '/../secret.txt',
      '/..%2fsecret.txt',
      '/assets/..%2f..%2fsecret.txt',
      '/%2e%2e/secret.txt',
    ]) {
      const answer = await get(url, p);
      expect(answer.body.toString(), p).not.toContain('outside the site');
      expect([400, 403, 404], p).toContain(answer.status);
    }
    expect((await get(url, '/.env')).body.toString()).not.toContain('SECRET');
    expect((await get(url, '/passwd.txt')).body.toString()).not.toContain('root:');
    expect((await get(url, '/', {})).status).toBe(200);
    const post = await new Promise<number>((resolve, reject) => {
      const u = new URL(url);
      const req = http.request(
        {
          host: '127.0.0.1',
          port: u.port,
          path: '/',
          method: 'POST',
          headers: { host: u.host },
          agent: false,
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end('x');
    });
    expect(post).toBe(405);
  });

  it('is served at the project URL; a redeploy replaces it, stop answers 503, and rollback brings v1 back', async () => {
    const project = await client.projects.get.query({ id: projectId });
    expect((await get(project.url!, '/')).body.toString()).toContain('<title>v1</title>');
    const { d: v2 } = await deployAndRun(builtSite('v2'));
    expect((await get(project.url!, '/')).body.toString()).toContain('<title>v2</title>');
    expect((await get(v2.publicUrl!, '/')).body.toString()).toContain('<title>v2</title>');
    // v1 drains, then stops: its URL answers 503 (its files are kept until destroy).
    await waitForStatus(client, site.id, ['STOPPED'], 30_000);
    expect((await get(site.publicUrl!, '/')).status).toBe(503);
    const rolled = await client.deployments.rollback.mutate({ id: site.id });
    const back = await waitForStatus(client, rolled.id, ['RUNNING', 'FAILED'], 300_000);
    expect(back.status, await logText(client, rolled.id)).toBe('RUNNING');
    expect((await get(project.url!, '/')).body.toString()).toContain('<title>v1</title>');
    await client.deployments.stop.mutate({ id: rolled.id });
    expect((await get(back.publicUrl!, '/')).status).toBe(503);
    await client.deployments.destroy.mutate({ id: site.id });
    expect(fs.existsSync(path.join(ctx.dataDir, 'static', site.id))).toBe(false);
  });

  it('a build that leaves no static files and has nothing to start fails, saying what to add', async () => {
    const dir = appFolder({
      'package.json': JSON.stringify({ name: 'nothing', scripts: { build: 'echo built' } }),
    });
    const created = await deployFolder(client, projectId, dir);
    const d = await waitForStatus(client, created.id, ['RUNNING', 'FAILED'], 300_000);
    expect(d.status).toBe('FAILED');
    expect(await logText(client, created.id)).toContain(
      'nothing to start: package.json has no "start" script, and the build left no dist/, build/, out/ folder of static files',
    );
  });
});

describe('the Vite React starter (create-vite react-ts, as generated)', () => {
  it('builds, and is served as a static site with no app process', { timeout: 600_000 }, async () => {
    const dir = path.join(__dirname, 'fixtures/starters/vite-react');
    const { d, log } = await deployAndRun(dir);
    expect(d.runtimeType).toBe('static');
    expect(log).toContain('runtime static (React (Vite)): provisioning a sandbox');
    expect(processesOfSandbox(d.id)).toEqual([]);
    const index = await get(d.publicUrl!, '/');
    expect(index.body.toString()).toContain('<div id="root"></div>');
    const asset = /src="(\/assets\/index-[\w-]+\.js)"/.exec(index.body.toString())?.[1];
    expect(asset).toBeDefined();
    const js = await get(d.publicUrl!, asset!);
    expect(js.status).toBe(200);
    expect(js.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    await client.deployments.destroy.mutate({ id: d.id });
  });
});

describe('Node versions', () => {
  it('an app with engines.node >=22 runs on Node >= 22, and the log names it', async () => {
    const dir = appFolder({
      'package.json': JSON.stringify({
        name: 'engines',
        engines: { node: '>=22' },
        scripts: { start: 'node server.js' },
      }),
      'server.js': `require('http').createServer((q, s) => s.end(process.version)).listen(process.env.PORT, '127.0.0.1');`,
    });
    const { d, log } = await deployAndRun(dir);
    expect(log).toMatch(/using Node 2\d\.\d+\.\d+ \(engines\.node in package\.json: >=22\)/);
    const answer = await get(d.publicUrl!, '/');
    const major = Number(/^v(\d+)\./.exec(answer.body.toString())?.[1]);
    expect(major).toBeGreaterThanOrEqual(22);
    await client.deployments.destroy.mutate({ id: d.id });
  });

  it('.nvmrc pins a line, and a version no release matches fails with the reason', async () => {
    const pinned = appFolder({
      '.nvmrc': 'v22\n',
      'package.json': JSON.stringify({ name: 'nvmrc', scripts: { start: 'node server.js' } }),
      'server.js': `require('http').createServer((q, s) => s.end(process.version)).listen(process.env.PORT, '127.0.0.1');`,
    });
    const { d } = await deployAndRun(pinned);
    expect((await get(d.publicUrl!, '/')).body.toString()).toMatch(/^v22\./);
    await client.deployments.destroy.mutate({ id: d.id });

    const impossible = appFolder({
      'package.json': JSON.stringify({
        name: 'future',
        engines: { node: '>=99' },
        scripts: { start: 'node x' },
      }),
    });
    const created = await deployFolder(client, projectId, impossible);
    expect((await waitForStatus(client, created.id, ['RUNNING', 'FAILED'])).status).toBe('FAILED');
    // Refused with the reason, whether the registry answered (no release matches) or not (only the
    // host's Node, which does not match either).
    expect(await logText(client, created.id)).toMatch(
      /engines\.node in package\.json asks for Node >=99, and (no Node\.js release matches it \(newest: \d+|only the host's Node [\d.]+ is available \(the npm registry cannot be reached)/,
    );
  });
});
