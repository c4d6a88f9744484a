/**
 * Builds sized for building, the machine's build queue, and the build cache per project (issue #23),
 * through the whole server: installs get the build memory while the app keeps its plan's, a build
 * waits for a slot and says so, and a redeploy with the same lockfile reuses node_modules. The build
 * memory needs cgroups (isolation): elsewhere that test is skipped.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type CodeRunnerClient, createClient } from '@coderunner/api/client';
import { User } from '@coderunner/db';
import { freePort } from '@coderunner/db/testing';
import { detectIsolation } from '@coderunner/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appFolder,
  curl,
  type DeployingServer,
  deployFolder,
  logText,
  startDeployingServer,
  waitForStatus,
} from './fixtures/deploy-helpers';

const isolated = detectIsolation('auto').mode === 'sandbox';
let ctx: DeployingServer;

beforeAll(async () => {
  ctx = await startDeployingServer(
    {
      CODERUNNER_START_TIMEOUT_S: '30',
      CODERUNNER_BUILD_SLOTS: '1',
      // The personal plan's builds may take 4 s: the time limit test uses it.
      CODERUNNER_BUILD_LIMITS_PERSONAL: '0.067/1024',
      CODERUNNER_APPS_EMBEDDED_PG_PORT: String(await freePort()),
    },
    { email: 'builder@example.com', project: 'builder' },
  );
});

afterAll(() => ctx?.close());

/** A new user on `plan`, with one project. */
async function userOn(plan: 'free' | 'personal' | 'team', email: string) {
  const anon = createClient({ url: `${ctx.server.url}/trpc` });
  const { token, user } = await anon.auth.register.mutate({ email, password: 'builder password' });
  await User.update({ planType: plan }, { where: { id: user.id } });
  const client = createClient({ url: `${ctx.server.url}/trpc`, token });
  const projectId = (await client.projects.create.mutate({ name: `p-${plan}` })).id;
  return { client, projectId };
}

async function running(client: CodeRunnerClient, id: string) {
  const d = await waitForStatus(client, id, ['RUNNING', 'FAILED'], 180_000);
  expect(d.status, await logText(client, id)).toBe('RUNNING');
  return d;
}

/** Allocates (and touches) `mb` MB, then says so. */
const allocate = (mb: number) =>
  `node -e "const a=[];for(let i=0;i<${mb / 10};i++)a.push(Buffer.alloc(10<<20,1));console.log('allocated ' + a.length*10 + ' MB')"`;

describe.skipIf(!isolated)('build memory apart from the run limits', () => {
  it('an install taking 400 MB succeeds on the free plan; the app is still held to 256 MB', async () => {
    const { client, projectId } = await userOn('free', 'free-builder@example.com');
    const dir = appFolder({
      // restart: never — the first out-of-memory kill is final (else the app is restarted).
      'coderunner.json': JSON.stringify({
        install: allocate(400),
        start: 'node server.js',
        restart: 'never',
      }),
      'server.js': `const http = require('http'); const hoard = [];
http.createServer((q, r) => {
  if (q.url === '/hog') { r.end('eating'); setInterval(() => hoard.push(Buffer.alloc(32 << 20, 1)), 10); return; }
  r.end('small');
}).listen(process.env.PORT, '127.0.0.1');`,
    });
    const d = await running(client, (await deployFolder(client, projectId, dir)).id);
    const log = await logText(client, d.id);
    expect(log).toContain('allocated 400 MB');
    expect((await curl(d.publicUrl!)).body).toBe('small');
    await curl(`${d.publicUrl}hog`);
    await waitForStatus(client, d.id, ['FAILED'], 60_000);
    const deadline = Date.now() + 10_000;
    let logs = await logText(client, d.id);
    while (!logs.includes('out of memory (limit 256 MB)') && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      logs = await logText(client, d.id);
    }
    expect(logs).toContain('out of memory (limit 256 MB)');
  }, 300_000);
});

describe('build time limit and queue', () => {
  it('a build past its plan time limit fails with the reason', async () => {
    const { client, projectId } = await userOn('personal', 'slow-builder@example.com');
    const dir = appFolder({
      'coderunner.json': JSON.stringify({ build: 'sleep 30', start: 'node -e 0' }),
    });
    const d = await waitForStatus(client, (await deployFolder(client, projectId, dir)).id, [
      'FAILED',
      'RUNNING',
    ]);
    expect(d.status).toBe('FAILED');
    expect(d.failureReason).toMatch(
      /^build time limit reached: install and build may take 4 s on the personal plan/,
    );
  });

  it('with one slot, a second build says it waits, and runs after the first', async () => {
    const { client, projectId } = ctx;
    const other = (await client.projects.create.mutate({ name: 'queue-two' })).id;
    const slowApp = (name: string) =>
      appFolder({
        'coderunner.json': JSON.stringify({ build: 'sleep 2', start: 'node server.js' }),
        'server.js': `require('http').createServer((q, r) => r.end(${JSON.stringify(name)})).listen(process.env.PORT, '127.0.0.1');`,
      });
    const [a, b] = await Promise.all([
      deployFolder(client, projectId, slowApp('a')),
      deployFolder(client, other, slowApp('b')),
    ]);
    await running(client, a.id);
    await running(client, b.id);
    const logs = [await logText(client, a.id), await logText(client, b.id)];
    const waited = logs.filter((l) =>
      /waiting for a build slot: 0 builds ahead \(1 slot on this machine/.test(l),
    );
    expect(waited).toHaveLength(1);
    expect(waited[0]).toMatch(/got a build slot after \d+\.\d s/);
  }, 300_000);
});

describe('the build cache', () => {
  /** An app whose one dependency is a tarball in its folder (npm installs it with no network). */
  function appWithDependency(version: string): string {
    const pkg = appFolder({
      'package.json': JSON.stringify({ name: 'tiny', version, main: 'index.js' }),
      'index.js': `module.exports = ${JSON.stringify(version)};`,
    });
    const dir = appFolder({
      'server.js': `const v = require('tiny'); require('http').createServer((q, r) => r.end('tiny ' + v)).listen(process.env.PORT, '127.0.0.1');`,
    });
    execFileSync('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: pkg, stdio: 'ignore' });
    fs.writeFileSync(
      path.join(dir, 'package.json'),
      JSON.stringify({
        name: 'cached',
        scripts: { start: 'node server.js' },
        dependencies: { tiny: `file:tiny-${version}.tgz` },
      }),
    );
    execFileSync('npm', ['install', '--package-lock-only', '--offline', '--no-audit', '--no-fund'], {
      cwd: dir,
      stdio: 'ignore',
    });
    fs.rmSync(pkg, { recursive: true, force: true });
    return dir;
  }

  it('a redeploy or a start with the same lockfile reuses node_modules; a new lockfile or --no-cache does not; another project sees none of it', async () => {
    const { client } = ctx;
    const projectId = (await client.projects.create.mutate({ name: 'cached' })).id;
    const dir = appWithDependency('1.0.0');
    const first = await running(client, (await deployFolder(client, projectId, dir)).id);
    const firstLog = await logText(client, first.id);
    expect(firstLog).toContain('install: npm ci');
    expect(firstLog).toMatch(/build cache kept for the next build/);
    expect((await curl(first.publicUrl!)).body).toBe('tiny 1.0.0');

    // Redeploy: node_modules from the cache, no install at all (so nothing downloaded).
    const second = await running(client, (await client.deployments.redeploy.mutate({ id: first.id })).id);
    const secondLog = await logText(client, second.id);
    expect(secondLog).toContain('reusing node_modules (lockfile unchanged');
    expect(secondLog).not.toContain('install: npm ci');
    expect((await curl(second.publicUrl!)).body).toBe('tiny 1.0.0');

    // Stopped, then started: no install either.
    await client.deployments.stop.mutate({ id: second.id });
    await client.deployments.start.mutate({ id: second.id });
    const restarted = await running(client, second.id);
    const restartLog = (await logText(client, second.id)).split('starting again from the stored source')[1]!;
    expect(restartLog).toContain('reusing node_modules (lockfile unchanged');
    expect(restartLog).not.toContain('install: npm ci');
    expect((await curl(restarted.publicUrl!)).body).toBe('tiny 1.0.0');

    // A changed lockfile: installed again.
    const changed = await running(
      client,
      (await deployFolder(client, projectId, appWithDependency('1.0.1'))).id,
    );
    const changedLog = await logText(client, changed.id);
    expect(changedLog).not.toContain('reusing node_modules');
    expect(changedLog).toContain("reusing from the build cache: npm's cache");
    expect(changedLog).toContain('install: npm ci');
    expect((await curl(changed.publicUrl!)).body).toBe('tiny 1.0.1');

    // --no-cache: dropped, installed again.
    const fresh = await running(
      client,
      (await client.deployments.redeploy.mutate({ id: first.id, noCache: true })).id,
    );
    const freshLog = await logText(client, fresh.id);
    expect(freshLog).toContain('build cache dropped (--no-cache)');
    expect(freshLog).not.toContain('reusing');
    expect(freshLog).toContain('install: npm ci');

    // A failed build gives npm's cache back: the next build still finds it.
    const failingDir = appWithDependency('1.0.1');
    const pkg = JSON.parse(fs.readFileSync(path.join(failingDir, 'package.json'), 'utf8'));
    fs.writeFileSync(
      path.join(failingDir, 'package.json'),
      JSON.stringify({ ...pkg, scripts: { ...pkg.scripts, build: 'exit 3' } }),
    );
    const failing = await waitForStatus(
      client,
      (await deployFolder(client, projectId, failingDir)).id,
      ['FAILED', 'RUNNING'],
      180_000,
    );
    expect(failing.status).toBe('FAILED');
    const after = await running(
      client,
      (await deployFolder(client, projectId, appWithDependency('1.0.1'))).id,
    );
    expect(await logText(client, after.id)).toContain("reusing from the build cache: npm's cache");

    // Another user's project, the same lockfile: nothing of this project's cache.
    const stranger = await userOn('team', 'stranger@example.com');
    const theirs = await running(
      stranger.client,
      (await deployFolder(stranger.client, stranger.projectId, dir)).id,
    );
    const theirLog = await logText(stranger.client, theirs.id);
    expect(theirLog).not.toContain('reusing');
    expect(theirLog).toContain('install: npm ci');

    // Kept where only root may enter; deleting the project drops it.
    const store = path.join(ctx.dataDir, 'sandboxes', '.build-cache', projectId);
    expect(fs.statSync(store).mode & 0o777).toBe(0o700);
    // (--no-cache dropped the 1.0.0 and 1.0.1 ones; its own build and the last kept one each again.)
    expect(fs.readdirSync(store).filter((n) => n.startsWith('node_modules-'))).toHaveLength(2);
    await client.projects.delete.mutate({ id: projectId });
    expect(fs.existsSync(store)).toBe(false);
  }, 900_000);
});
