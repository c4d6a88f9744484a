/**
 * The AgentSphere provider, through the unmodified SDK, against the local fake in ./fake-agentsphere.
 */
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AgentSphereProviderOptions,
  agentSphereConfigFromEnv,
  createAgentSphereProvider,
  ProviderAuthError,
  provisionAgentSphereDatabase,
  sweepOrphans,
} from '../src/agentsphere';
import { findFreePort } from '../src/local';
import {
  CommandTimeoutError,
  type FileEntry,
  ProviderQuotaError,
  ProviderUnavailableError,
  SandboxLifetimeExceededError,
  type SandboxMetadata,
  SandboxNotFoundError,
} from '../src/types';
import { FakeAgentSphere, installFetchRouter } from './fake-agentsphere';

const DOMAIN = 'agentsphere.test';
const API_KEY = 'as_test_0123456789';

const FAKE_TEMPLATES = {
  // pg_isready answers "ready" from its third probe on, like a server that takes a moment to start.
  'fake-postgres': {
    files: {
      'bin/pg_isready':
        '#!/bin/bash\nf="$HOME/.probes"; n=$(( $(cat "$f" 2>/dev/null || echo 0) + 1 )); echo $n > "$f"; [ $n -ge 3 ]\n',
      'bin/psql': '#!/bin/bash\n{ printf "%s\\n" "$@"; cat; } > "$HOME/psql.log"\n',
    },
  },
  'fake-postgres-broken': {
    files: {
      'bin/pg_isready': '#!/bin/bash\nexit 0\n',
      'bin/psql': '#!/bin/bash\necho "ERROR: cannot create role; args: $*" >&2\nexit 3\n',
    },
  },
  'fake-postgres-down': { files: { 'bin/pg_isready': '#!/bin/bash\nexit 2\n' } },
};

let fake: FakeAgentSphere;
let restoreFetch: () => void;

beforeAll(async () => {
  fake = await FakeAgentSphere.start({ apiKey: API_KEY, domain: DOMAIN, templates: FAKE_TEMPLATES });
  restoreFetch = installFetchRouter(fake);
});

afterAll(async () => {
  restoreFetch();
  await fake.stop();
  // SIGKILL is asynchronous: give the killed processes a moment to disappear.
  await eventually(async () => expect(processesInFakeSandboxes()).toEqual([]), 3_000);
});

function provider(options: Partial<AgentSphereProviderOptions> = {}) {
  return createAgentSphereProvider({
    apiKey: API_KEY,
    domain: DOMAIN,
    templates: { default: 'base', db: 'fake-postgres' },
    requestTimeoutMs: 5_000,
    retry: { attempts: 3, baseDelayMs: 10 },
    ...options,
  });
}

const meta = (deploymentId: string, projectId = 'p-1'): SandboxMetadata => ({
  deploymentId,
  projectId,
  role: 'app',
});

describe('AgentSphere provider: a deployment end to end', () => {
  it('creates a sandbox, uploads files in batches, installs, serves the app over its public host, stops it', async () => {
    const agentsphere = provider();
    const sandbox = await agentsphere.create({
      metadata: meta('d-app'),
      envs: { GREETING: 'hello from the sandbox' },
    });
    // Plus the id of the create call, by which a create that failed is looked up before another.
    expect(fake.sandboxes.get(sandbox.id)?.metadata).toEqual({
      ...meta('d-app'),
      createRequest: expect.any(String),
    });
    expect(fake.sandboxes.get(sandbox.id)?.templateID).toBe('base');

    const files: FileEntry[] = [
      { path: 'server.js', data: HELLO_SERVER },
      { path: 'scripts/install.sh', data: INSTALL_SCRIPT, mode: 0o755 },
      ...Array.from({ length: 70 }, (_, i) => ({
        path: `lib/module-${i}.js`,
        data: new TextEncoder().encode(`// ${i}\n`),
      })),
    ];
    const uploadsBefore = fake.callsTo('POST', /^\/files$/, 'envd').length;
    await sandbox.writeFiles(files);
    expect(fake.callsTo('POST', /^\/files$/, 'envd').length - uploadsBefore).toBe(2);
    const appDir = join(fake.sandboxes.get(sandbox.id)!.root, 'home/user/app');
    expect(readFileSync(join(appDir, 'lib/module-69.js'), 'utf8')).toBe('// 69\n');

    const chunks: string[] = [];
    const install = await sandbox.run('./scripts/install.sh', { onStdout: (chunk) => chunks.push(chunk) });
    expect(install.exitCode).toBe(0);
    expect(chunks.length).toBeGreaterThanOrEqual(2);
    expect(chunks.join('')).toContain('installed 3 of 3');

    const failed = await sandbox.run('echo oops >&2; exit 3');
    expect(failed).toEqual({ exitCode: 3, stdout: '', stderr: 'oops\n' });
    expect((await sandbox.run('pwd', { cwd: 'lib' })).stdout.trim()).toMatch(/\/home\/user\/app\/lib$/);

    const port = await findFreePort();
    const exits: unknown[] = [];
    const app = await sandbox.startApp({
      command: 'node server.js',
      port,
      onExit: (info) => exits.push(info),
    });
    expect(sandbox.getHost(port)).toBe(`${port}-${sandbox.id}.${DOMAIN}`);
    expect(app.internalUrl).toBe(`https://${port}-${sandbox.id}.${DOMAIN}`);
    const page = await eventually(async () => (await fetch(app.internalUrl)).text());
    expect(page).toBe(`hello from the sandbox on port ${port}`);
    expect(await sandbox.isAppRunning()).toBe(true);

    await sandbox.stopApp();
    expect(await sandbox.isAppRunning()).toBe(false);
    await expect(fetch(app.internalUrl)).rejects.toThrow();
    await sandbox.stopApp();
    expect(exits).toEqual([]);

    await sandbox.kill();
    expect(fake.sandboxes.has(sandbox.id)).toBe(false);
  });

  it('reports an app that exits on its own, and finds a running app again after connect', async () => {
    const agentsphere = provider();
    const sandbox = await agentsphere.create({ metadata: meta('d-exit') });
    const exits: unknown[] = [];
    await sandbox.startApp({ command: 'echo starting; exit 7', port: 1, onExit: (info) => exits.push(info) });
    await eventually(async () => expect(exits).toEqual([{ exitCode: 7, signal: null }]));
    expect(await sandbox.isAppRunning()).toBe(false);

    await sandbox.startApp({ command: 'sleep 60', port: 2 });
    const again = await agentsphere.connect(sandbox.id);
    expect(again.metadata).toEqual(meta('d-exit'));
    expect(await again.isAppRunning()).toBe(true);
    expect(await again.getApp()).toMatchObject({ port: 2, internalUrl: `https://2-${sandbox.id}.${DOMAIN}` });
    await again.stopApp();
    expect(await again.isAppRunning()).toBe(false);
    expect(await again.getApp()).toBeNull();
    await sandbox.kill();
  });

  it('followApp: a re-attached sandbox follows the running app output and its exit', async () => {
    const agentsphere = provider();
    const sandbox = await agentsphere.create({ metadata: meta('d-follow') });
    await sandbox.startApp({ command: 'sleep 0.5; echo later; sleep 0.5; exit 4', port: 3 });
    expect(await sandbox.followApp({}), 'started by this object: already followed').toBe(false);

    const again = await agentsphere.connect(sandbox.id); // as a restarted server would
    let stdout = '';
    const exits: unknown[] = [];
    const follow = {
      onStdout: (text: string) => {
        stdout += text;
      },
      onExit: (info: unknown) => exits.push(info),
    };
    expect(await again.followApp(follow)).toBe(true);
    expect(await again.followApp(follow), 'already followed').toBe(false);
    await eventually(async () => expect(exits).toEqual([{ exitCode: 4, signal: null }]), 10_000);
    expect(stdout).toContain('later');
    expect(await again.followApp(follow), 'no app runs').toBe(false);
    await sandbox.kill();
  });

  it('a broken output stream is not an exit: it re-attaches and goes on following the app', async () => {
    const sandbox = await provider().create({ metadata: meta('d-stream') });
    let stdout = '';
    const exits: unknown[] = [];
    await sandbox.startApp({
      command: 'echo before; sleep 1.5; echo after; sleep 60',
      port: 4,
      onStdout: (text) => {
        stdout += text;
      },
      onExit: (info) => exits.push(info),
    });
    await eventually(async () => expect(stdout).toContain('before'));
    expect(fake.breakStreams(sandbox.id)).toBe(1);
    await eventually(async () => expect(stdout).toContain('after'), 10_000);
    expect(exits).toEqual([]);
    expect(await sandbox.isAppRunning()).toBe(true);
    expect(
      fake.callsTo('POST', /\/process\.Process\/Connect$/, 'envd').some((c) => c.sandboxId === sandbox.id),
    ).toBe(true);
    await sandbox.stopApp();
    expect(exits).toEqual([]);
    await sandbox.kill();
  });

  it('a broken stream of an app that then exits 4 reports exit code 4', async () => {
    const sandbox = await provider().create({ metadata: meta('d-stream-exit') });
    const exits: unknown[] = [];
    let stdout = '';
    await sandbox.startApp({
      command: 'echo up; sleep 2; exit 4',
      port: 5,
      onStdout: (text) => {
        stdout += text;
      },
      onExit: (info) => exits.push(info),
    });
    await eventually(async () => expect(stdout).toContain('up'));
    expect(fake.breakStreams(sandbox.id)).toBe(1);
    await eventually(async () => expect(exits).toEqual([{ exitCode: 4, signal: null }]), 10_000);
    await sandbox.kill();
  });

  it('an app whose process vanished while its stream was broken is reported ended', async () => {
    const sandbox = await provider().create({ metadata: meta('d-stream-gone') });
    const exits: unknown[] = [];
    let stdout = '';
    await sandbox.startApp({
      command: 'echo up; sleep 60',
      port: 6,
      onStdout: (text) => {
        stdout += text;
      },
      onExit: (info) => exits.push(info),
    });
    await eventually(async () => expect(stdout).toContain('up'));
    const proc = [...fake.sandboxes.get(sandbox.id)!.processes.values()][0]!;
    fake.breakStreams(sandbox.id);
    process.kill(-proc.pid, 'SIGKILL');
    await eventually(async () => expect(exits).toHaveLength(1), 10_000);
    await sandbox.kill();
  });

  it('a command whose stream breaks (a long build) is re-attached and runs to its end', async () => {
    const sandbox = await provider().create({ metadata: meta('d-run-stream') });
    let stdout = '';
    const result = sandbox.run('echo one; sleep 1.5; echo two; exit 3', {
      onStdout: (text) => {
        stdout += text;
      },
    });
    await eventually(async () => expect(stdout).toContain('one'));
    expect(fake.breakStreams(sandbox.id)).toBe(1);
    const { exitCode, stdout: kept } = await result;
    expect(exitCode).toBe(3);
    expect(kept).toBe('one\ntwo\n');
    expect(stdout).toBe('one\ntwo\n');
    await sandbox.kill();
  });

  it('kills a command that runs past its timeout', async () => {
    const sandbox = await provider().create({ metadata: meta('d-slow') });
    const started = Date.now();
    const error = await sandbox.run('echo begun; sleep 30', { timeoutMs: 500 }).catch((err) => err);
    expect(error).toBeInstanceOf(CommandTimeoutError);
    expect(error.stdout).toBe('begun\n');
    expect(Date.now() - started).toBeLessThan(5_000);
    await eventually(async () => expect(fake.sandboxes.get(sandbox.id)?.processes.size).toBe(0));
    await sandbox.kill();
  });
});

describe('AgentSphere provider: lifetime', () => {
  it('keeps a sandbox alive past its first timeout', async () => {
    const agentsphere = provider();
    const sandbox = await agentsphere.create({ metadata: meta('d-alive'), timeoutMs: 1_000 });
    await sandbox.keepAlive(10_000);
    const keepAlive = fake.callsTo('POST', /\/timeout$/).find((c) => c.path.includes(sandbox.id));
    expect(keepAlive?.body).toEqual({ timeout: 10 });
    await sleep(1_500);
    expect((await agentsphere.connect(sandbox.id)).id).toBe(sandbox.id);
    await sandbox.kill();
  });

  it('reports a sandbox that expired as SandboxNotFoundError', async () => {
    const agentsphere = provider();
    const sandbox = await agentsphere.create({ metadata: meta('d-vanished'), timeoutMs: 1_000 });
    await sleep(1_500);
    expect(fake.sandboxes.has(sandbox.id)).toBe(false);
    await expect(agentsphere.connect(sandbox.id)).rejects.toBeInstanceOf(SandboxNotFoundError);
    await expect(sandbox.run('true')).rejects.toBeInstanceOf(SandboxNotFoundError);
    await expect(sandbox.keepAlive(60_000)).rejects.toBeInstanceOf(SandboxNotFoundError);
    await sandbox.stopApp();
    await sandbox.kill();
  });

  it('kills idempotently', async () => {
    const agentsphere = provider();
    const sandbox = await agentsphere.create({ metadata: meta('d-kill') });
    expect(await agentsphere.kill(sandbox.id)).toBe(true);
    expect(await agentsphere.kill(sandbox.id)).toBe(false);
    await sandbox.kill();
  });

  it('lists by metadata and sweeps orphans', async () => {
    const agentsphere = provider();
    const keep = await agentsphere.create({ metadata: meta('keep', 'p-sweep') });
    const orphans = await Promise.all([
      agentsphere.create({ metadata: meta('failed', 'p-sweep') }),
      agentsphere.create({ metadata: { ...meta('destroyed', 'p-sweep'), role: 'db' } }),
    ]);
    const listed = await agentsphere.list({ metadata: { projectId: 'p-sweep', deploymentId: 'keep' } });
    expect(listed.map((s) => s.id)).toEqual([keep.id]);
    expect(listed[0]?.startedAt).toBeInstanceOf(Date);

    const killed = await sweepOrphans(
      agentsphere,
      async ({ metadata }) => metadata.projectId !== 'p-sweep' || metadata.deploymentId === 'keep',
    );
    expect(killed.sort()).toEqual(orphans.map((s) => s.id).sort());
    expect((await agentsphere.list({ metadata: { projectId: 'p-sweep' } })).map((s) => s.id)).toEqual([
      keep.id,
    ]);
    await keep.kill();
  });
});

describe('AgentSphere provider: failures', () => {
  it('says clearly when the API key is rejected, without retrying', async () => {
    const before = fake.callsTo('POST', /^\/sandboxes$/).length;
    const error = await provider({ apiKey: 'wrong' })
      .create({ metadata: meta('d-401') })
      .catch((err) => err);
    expect(error).toBeInstanceOf(ProviderAuthError);
    expect(error.message).toBe('AgentSphere rejected the API key (401): check AGENTSPHERE_API_KEY');
    expect(fake.callsTo('POST', /^\/sandboxes$/).length - before).toBe(1);
  });

  it('retries 429 and 500, then succeeds', async () => {
    const before = fake.callsTo('GET', /^\/sandboxes$/).length;
    fake.failNext({ method: 'GET', path: /^\/sandboxes$/, status: 429 });
    fake.failNext({ method: 'GET', path: /^\/sandboxes$/, status: 500 });
    await expect(provider().list()).resolves.toBeInstanceOf(Array);
    expect(fake.callsTo('GET', /^\/sandboxes$/).length - before).toBe(3);
  });

  it('gives up after the configured attempts with ProviderUnavailableError', async () => {
    fake.failNext({ method: 'POST', path: /^\/sandboxes$/, status: 503, count: 3 });
    const error = await provider()
      .create({ metadata: meta('d-503') })
      .catch((err) => err);
    expect(error).toBeInstanceOf(ProviderUnavailableError);
    expect(error.message).toMatch(
      /^AgentSphere is unavailable: could not create a sandbox .* after 3 attempt/,
    );
  });

  it('retries a failed upload to the sandbox', async () => {
    const sandbox = await provider().create({ metadata: meta('d-upload') });
    fake.failNext({ target: 'envd', path: /^\/files$/, status: 503 });
    await sandbox.writeFiles([{ path: 'a.txt', data: 'a' }]);
    expect(readFileSync(join(fake.sandboxes.get(sandbox.id)!.root, 'home/user/app/a.txt'), 'utf8')).toBe('a');
    await sandbox.kill();
  });

  it('times out requests that hang, API and envd alike', async () => {
    const agentsphere = provider({ requestTimeoutMs: 300, retry: { attempts: 2, baseDelayMs: 10 } });
    fake.failNext({ method: 'GET', path: /^\/sandboxes$/, hang: true, count: 2 });
    const started = Date.now();
    await expect(agentsphere.list()).rejects.toBeInstanceOf(ProviderUnavailableError);

    const sandbox = await agentsphere.create({ metadata: meta('d-hang') });
    fake.failNext({ target: 'envd', path: /^\/files$/, hang: true, count: 2 });
    await expect(sandbox.writeFiles([{ path: 'a.txt', data: 'a' }])).rejects.toBeInstanceOf(
      ProviderUnavailableError,
    );
    expect(Date.now() - started).toBeLessThan(10_000);
    await sandbox.kill();
  });

  it('refuses to start without an API key', () => {
    expect(() => agentSphereConfigFromEnv({ AGENTSPHERE_API_KEY: ' ' })).toThrow(
      /^SANDBOX_PROVIDER=agentsphere needs AGENTSPHERE_API_KEY/,
    );
    expect(agentSphereConfigFromEnv({ AGENTSPHERE_API_KEY: 'k', AGENTSPHERE_DB_TEMPLATE: 'pg' })).toEqual({
      apiKey: 'k',
      domain: 'agentsphere.run',
      templates: { default: 'base', nodejs: undefined, python: undefined, db: 'pg' },
    });
  });
});

describe('AgentSphere provider: production behaviours', () => {
  it('creates sandboxes with a secured envd: the token comes from the API, envd refuses calls without it', async () => {
    const agentsphere = provider();
    const sandbox = await agentsphere.create({ metadata: meta('d-secure') });
    expect(fake.callsTo('POST', /^\/sandboxes$/).at(-1)?.body).toMatchObject({ secure: true });
    const token = fake.sandboxes.get(sandbox.id)?.accessToken;
    expect(token).toMatch(/^[0-9a-f]{32}$/);
    const refusedBefore = fake.refusedEnvdCalls;
    // Someone who knows only the sandbox id (it is in the public URL) is refused.
    const anonymous = await fetch(`https://49983-${sandbox.id}.${DOMAIN}/process.Process/List`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(anonymous.status).toBe(401);
    expect(fake.refusedEnvdCalls).toBe(refusedBefore + 1);
    // A fresh provider (a restarted server) gets the token from the API again, and works.
    const again = await provider().connect(sandbox.id);
    expect((await again.run('echo $((6 * 7))')).stdout).toBe('42\n');
    expect(fake.refusedEnvdCalls).toBe(refusedBefore + 1);
    await sandbox.kill();
  });

  it('connects with one API call, and reuses it while the sandbox lives', async () => {
    const agentsphere = provider();
    const sandbox = await agentsphere.create({ metadata: meta('d-connect') });
    const gets = () => fake.callsTo('GET', new RegExp(`^/sandboxes/${sandbox.id}$`)).length;
    const other = provider();
    await other.connect(sandbox.id);
    expect(gets()).toBe(1); // the SDK's own connect would read the info twice
    await other.connect(sandbox.id);
    await agentsphere.connect(sandbox.id);
    expect(gets()).toBe(1);
    await agentsphere.kill(sandbox.id);
    await expect(agentsphere.connect(sandbox.id)).rejects.toBeInstanceOf(SandboxNotFoundError);
    // Killed elsewhere: the cached connect is handed out, and its first call says the sandbox is gone.
    await expect((await other.connect(sandbox.id)).isAppRunning()).rejects.toBeInstanceOf(
      SandboxNotFoundError,
    );
  });

  it('a create that failed after the sandbox was made is found by its metadata, not made twice', async () => {
    const agentsphere = provider();
    fake.failNext({ method: 'POST', path: /^\/sandboxes$/, status: 502, afterHandling: true });
    const before = [...fake.sandboxes.values()].filter((s) => s.metadata.deploymentId === 'd-once').length;
    const sandbox = await agentsphere.create({ metadata: meta('d-once') });
    const made = [...fake.sandboxes.values()].filter((s) => s.metadata.deploymentId === 'd-once');
    expect(made.length - before).toBe(1);
    expect(made.map((s) => s.id)).toContain(sandbox.id);
    expect((await sandbox.run('true')).exitCode).toBe(0);
    await sandbox.kill();
  });

  it('names quota and rate answers as such, with the service message, without retrying blindly', async () => {
    const agentsphere = provider();
    const creates = () => fake.callsTo('POST', /^\/sandboxes$/).length;
    let before = creates();
    fake.failNext({
      method: 'POST',
      path: /^\/sandboxes$/,
      status: 403,
      message: 'Team is blocked: out of credits',
    });
    const forbidden = await agentsphere.create({ metadata: meta('d-403') }).catch((err) => err);
    expect(forbidden).toBeInstanceOf(ProviderQuotaError);
    expect(forbidden.message).toMatch(
      /^AgentSphere refused to create a sandbox .*\(403\): Team is blocked: out of credits\./,
    );
    expect(creates() - before).toBe(1);

    before = creates();
    fake.failNext({ method: 'POST', path: /^\/sandboxes$/, status: 429, count: 2 });
    const limited = await agentsphere.create({ metadata: meta('d-429') }).catch((err) => err);
    expect(limited).toBeInstanceOf(ProviderQuotaError);
    expect(limited.message).toMatch(/^AgentSphere is limiting requests \(429\)/);
    expect(creates() - before).toBe(2); // once more after a pause, not the whole retry budget
  });

  it('recognises the end of the maximum lifetime when keeping a sandbox alive', async () => {
    const limited = await FakeAgentSphere.start({
      apiKey: API_KEY,
      domain: 'limited.test',
      maxLifetimeMs: 2_000,
    });
    const restore = installFetchRouter(limited);
    try {
      const agentsphere = provider({ domain: 'limited.test' });
      const sandbox = await agentsphere.create({ metadata: meta('d-max'), timeoutMs: 1_000 });
      await sandbox.keepAlive(1_000);
      const error = await sandbox.keepAlive(5_000).catch((err) => err);
      expect(error).toBeInstanceOf(SandboxLifetimeExceededError);
      expect(error.message).toMatch(/reached its maximum lifetime: .*maximum lifetime \(2 s\)/);
      await sleep(2_500);
      expect(limited.sandboxes.has(sandbox.id)).toBe(false);
    } finally {
      restore();
      await limited.stop();
    }
  });

  it('stopping an app kills what it started too (envd signals only the pid)', async () => {
    const sandbox = await provider().create({ metadata: meta('d-group') });
    await sandbox.startApp({ command: 'sleep 300 & echo $! > child.pid; wait', port: 7 });
    const root = fake.sandboxes.get(sandbox.id)!.root;
    await eventually(async () =>
      expect(readFileSync(join(root, 'home/user/app/child.pid'), 'utf8')).toMatch(/^\d+/),
    );
    const child = Number(readFileSync(join(root, 'home/user/app/child.pid'), 'utf8'));
    expect(isAlive(child)).toBe(true);
    await sandbox.stopApp();
    await eventually(async () => expect(isAlive(child)).toBe(false));
    await sandbox.kill();
  });
});

describe('provisionAgentSphereDatabase', () => {
  it('waits for PostgreSQL, creates a role and a database, and returns how to connect', async () => {
    const { sandboxId, connectionInfo } = await provisionAgentSphereDatabase(provider(), {
      deploymentId: 'D-42',
      projectId: 'p-db',
    });
    const sandbox = fake.sandboxes.get(sandboxId)!;
    expect(sandbox.templateID).toBe('fake-postgres');
    expect(sandbox.metadata).toMatchObject({ deploymentId: 'D-42', projectId: 'p-db', role: 'db' });
    const host = `5432-${sandboxId}.${DOMAIN}`;
    const { password } = connectionInfo;
    expect(password).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(connectionInfo).toEqual({
      host,
      port: 5432,
      user: 'app_d42',
      password,
      database: 'app_d42',
      url: `postgresql://app_d42:${password}@${host}:5432/app_d42`,
    });
    expect(Number(readFileSync(join(sandbox.root, 'home/user/.probes'), 'utf8'))).toBe(3);
    const psql = readFileSync(join(sandbox.root, 'home/user/psql.log'), 'utf8');
    expect(psql).toContain(`CREATE ROLE :"db_name" LOGIN PASSWORD :'db_password';`);
    const verifier = /^db_password=(.*)$/m.exec(psql)?.[1] ?? '';
    expect(isScramVerifierOf(verifier, password)).toBe(true);
    // The password itself never reaches the sandbox.
    const sent = fake.callsTo('POST', /Process\/Start$/, 'envd').filter((c) => c.sandboxId === sandboxId);
    expect(JSON.stringify(sent)).not.toContain(password);
    await provider().kill(sandboxId);
  });

  it('removes the database sandbox when PostgreSQL refuses, without leaking the password', async () => {
    const error = await provisionAgentSphereDatabase(provider(), {
      deploymentId: 'D-43',
      projectId: 'p-db',
      template: 'fake-postgres-broken',
    }).catch((err) => err);
    expect(error.message).toMatch(
      /^could not create the database in the database sandbox: ERROR: cannot create role/,
    );
    expect(error.message).toContain('db_password=***');
    expect(error.message).not.toContain('SCRAM-SHA-256$');
    expect([...fake.sandboxes.values()].some((s) => s.metadata.deploymentId === 'D-43')).toBe(false);
  });

  it('removes the database sandbox when PostgreSQL never becomes ready', async () => {
    const error = await provisionAgentSphereDatabase(provider(), {
      deploymentId: 'D-44',
      projectId: 'p-db',
      template: 'fake-postgres-down',
      readyTimeoutMs: 1_000,
    }).catch((err) => err);
    expect(error.message).toMatch(/^PostgreSQL did not accept connections within 1 s/);
    expect([...fake.sandboxes.values()].some((s) => s.metadata.deploymentId === 'D-44')).toBe(false);
  });
});

const HELLO_SERVER = `
const http = require('node:http');
http
  .createServer((req, res) => res.end(process.env.GREETING + ' on port ' + process.env.PORT))
  .listen(Number(process.env.PORT), '127.0.0.1');
`;

const INSTALL_SCRIPT = '#!/bin/bash\nfor i in 1 2 3; do echo "installed $i of 3"; sleep 0.2; done\n';

async function eventually<T>(check: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

/** Does `verifier` (PostgreSQL's SCRAM-SHA-256 format) belong to `password`? */
function isScramVerifierOf(verifier: string, password: string): boolean {
  const [, iterations, salt, storedKey] = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):.+$/.exec(verifier) ?? [];
  if (!iterations || !salt) return false;
  const salted = pbkdf2Sync(password, Buffer.from(salt, 'base64'), Number(iterations), 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  return createHash('sha256').update(clientKey).digest('base64') === storedKey;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Processes whose working directory is still inside a fake sandbox (Linux /proc; none elsewhere). */
function processesInFakeSandboxes(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      if (readlinkSync(`/proc/${pid}/cwd`).includes('fake-agentsphere-')) found.push(pid);
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return found;
}
