/**
 * The local provider with real processes: apps answer HTTP, run as an unprivileged user (when the
 * tests run as root), see none of the server's environment, and leave nothing running once stopped.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { APPS_ADDRESS, createLocalProvider, findFreePort } from '../src/local';
import { identify } from '../src/local/processes';
import { detectRuntime } from '../src/runtime';
import {
  CommandTimeoutError,
  type Sandbox,
  SandboxError,
  type SandboxMetadata,
  SandboxNotFoundError,
  type SandboxProvider,
} from '../src/types';
import {
  eventually,
  fixtureDir,
  fixtureFiles,
  groupMembers,
  isAlive,
  isRoot,
  markedProcesses,
  sandboxProcesses,
  tempRoot,
} from './fixtures/local/helpers';

const SECRET = `secret-${process.pid}-${Date.now()}`;
const root = tempRoot('coderunner-local-');
let provider: SandboxProvider;
/** As root with bubblewrap and pasta (CI), every sandbox here is isolated (CODERUNNER_ISOLATION=auto). */
const isolated = createLocalProvider({ rootDir: '/nonexistent' }).isolation().mode === 'sandbox';
/** Where this machine reaches an app: isolated, the apps' own address (never the dashboard's). */
const APP_HOST = isolated ? APPS_ADDRESS : '127.0.0.1';
const created: Sandbox[] = [];

const metadata = (extra: Partial<SandboxMetadata> = {}): SandboxMetadata => ({
  deploymentId: 'd-1',
  projectId: 'p-1',
  role: 'app',
  ...extra,
});

async function newSandbox(
  extra: Partial<SandboxMetadata> = {},
  envs?: Record<string, string>,
): Promise<Sandbox> {
  const sandbox = await provider.create({ metadata: metadata(extra), envs });
  created.push(sandbox);
  return sandbox;
}

/** Start the app and wait until it listens. */
async function startAndWait(
  sandbox: Sandbox,
  command: string,
  extra: Partial<Parameters<Sandbox['startApp']>[0]> = {},
) {
  const port = await findFreePort(APP_HOST);
  const app = await sandbox.startApp({ command, port, ...extra });
  // Generous: Node's start in a sandbox took 8-15 s here with the machine's load at 25-30.
  await sandbox.waitUntilReady(app, { timeoutMs: 60_000 });
  return app;
}

async function getJson(url: string): Promise<Record<string, unknown>> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

function appDir(sandbox: Sandbox): string {
  return path.join(root.rootDir, sandbox.id, 'app');
}

beforeAll(() => {
  // Set in the server's own environment: no sandbox process may see it.
  process.env.CODERUNNER_TEST_SECRET = SECRET;
  provider = createLocalProvider({ rootDir: root.rootDir, killGraceMs: 1_000 });
});

afterEach(async () => {
  await Promise.all(created.splice(0).map((s) => s.kill()));
});

afterAll(async () => {
  delete process.env.CODERUNNER_TEST_SECRET;
  // Nothing any sandbox started may outlive the tests.
  await eventually(() => expect(sandboxProcesses(root.rootDir)).toEqual([]), 5_000);
  root.cleanup();
});

describe('local provider: apps', () => {
  it('runs a Node app that answers HTTP, as an unprivileged user, without the server environment', async () => {
    const sandbox = await newSandbox({}, { SANDBOX_LEVEL: 'from-create' });
    await sandbox.writeFiles(fixtureFiles('node-hello'));
    const plan = await detectRuntime(fixtureDir('node-hello'));
    expect(plan.start).toBe('node server.js');
    const lines: string[] = [];
    const app = await startAndWait(sandbox, plan.start!, {
      envs: { APP_LEVEL: 'from-start' },
      onStdout: (text) => lines.push(text),
    });
    expect(app.internalUrl).toBe(`http://${APP_HOST}:${app.port}`);
    expect(sandbox.getHost(app.port)).toBe(`${APP_HOST}:${app.port}`);

    const body = await getJson(app.internalUrl);
    const env = body.env as Record<string, string>;
    if (isRoot) expect(body.uid).not.toBe(0);
    expect(Object.values(env).join('\n')).not.toContain(SECRET);
    expect(env.CODERUNNER_TEST_SECRET).toBeUndefined();
    expect(env.PATH).toBe('/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    expect(env.HOME).toBe(isolated ? '/sandbox/home' : path.join(root.rootDir, sandbox.id, 'home'));
    expect(env).toMatchObject({
      PORT: String(app.port),
      SANDBOX_LEVEL: 'from-create',
      APP_LEVEL: 'from-start',
    });
    await eventually(() => expect(lines.join('')).toContain(`listening on ${app.port}`));
  });

  it('runs a Python standard-library app with the system python3', async () => {
    const sandbox = await newSandbox();
    await sandbox.writeFiles(fixtureFiles('python-hello'));
    const plan = await detectRuntime(fixtureDir('python-hello'));
    expect(plan).toMatchObject({ runtime: 'python', start: 'python3 main.py' });
    expect(plan.install).toBeUndefined();
    const app = await startAndWait(sandbox, plan.start!, { envs: plan.env });
    const body = await getJson(app.internalUrl);
    expect(body.runtime).toBe('python');
    if (isRoot) expect(body.uid).not.toBe(0);
    expect(JSON.stringify(body.env)).not.toContain(SECRET);
  });

  it('stops the whole process group, and processes that left it, with stopApp', async () => {
    const sandbox = await newSandbox();
    await sandbox.writeFiles(fixtureFiles('node-hello'));
    // A child in the app's group, and a daemon that left it with setsid.
    const app = await startAndWait(
      sandbox,
      'sleep 1000 & setsid sleep 1001 & echo $! > daemon.pid; exec node server.js',
    );
    const pgid = app.pid!;
    // node, sleep 1000 and the setsid daemon at least (isolated: in a PID namespace of their own).
    await eventually(() => expect(markedProcesses(sandbox.id).length).toBeGreaterThanOrEqual(3));
    if (!isolated) {
      await eventually(() => expect(groupMembers(pgid).length).toBeGreaterThanOrEqual(2));
      const daemon = Number(fs.readFileSync(path.join(appDir(sandbox), 'daemon.pid'), 'utf8'));
      expect(isAlive(daemon)).toBe(true);
    }

    await sandbox.stopApp();
    expect(groupMembers(pgid)).toEqual([]);
    expect(markedProcesses(sandbox.id)).toEqual([]);
    expect(await sandbox.isAppRunning()).toBe(false);
    expect(await sandbox.getApp()).toBeNull();
    await sandbox.stopApp(); // idempotent
  });

  it('reports an app that crashes after starting through onExit, after its last output', async () => {
    const sandbox = await newSandbox();
    const events: string[] = [];
    const exited = new Promise<{ exitCode: number | null; signal: string | null }>((resolve) => {
      void sandbox.startApp({
        command: `node -e "setTimeout(() => { console.error('boom'); process.exit(3); }, 300)"`,
        port: 1,
        onStderr: (text) => events.push(`stderr:${text.trim()}`),
        onExit: (info) => {
          events.push('exit');
          resolve(info);
        },
      });
    });
    expect(await exited).toEqual({ exitCode: 3, signal: null });
    expect(events).toEqual(['stderr:boom', 'exit']);
    expect(await sandbox.isAppRunning()).toBe(false);
  });

  it('does not call onExit when stopApp or kill ended the app', async () => {
    const sandbox = await newSandbox();
    await sandbox.writeFiles(fixtureFiles('node-hello'));
    let exits = 0;
    await startAndWait(sandbox, 'node server.js', { onExit: () => exits++ });
    await sandbox.stopApp();
    await startAndWait(sandbox, 'node server.js', { onExit: () => exits++ });
    await sandbox.kill();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(exits).toBe(0);
  });

  it('runs one app at a time', async () => {
    const sandbox = await newSandbox();
    await sandbox.writeFiles(fixtureFiles('node-hello'));
    await startAndWait(sandbox, 'node server.js');
    await expect(sandbox.startApp({ command: 'node server.js', port: await findFreePort() })).rejects.toThrow(
      /already runs an app/,
    );
  });

  it('keeps app logs bounded while every line still reaches the callbacks', async () => {
    const small = createLocalProvider({ rootDir: root.rootDir, logMaxBytes: 64 * 1024, killGraceMs: 500 });
    const sandbox = await small.create({ metadata: metadata() });
    created.push(sandbox);
    let received = '';
    // 1 MiB of numbered lines, then a last line, then it idles.
    await sandbox.startApp({
      command: `node -e "for (let i = 0; i < 8192; i++) console.log(String(i).padStart(127, '.')); setTimeout(() => console.log('LAST'), 300); setInterval(() => {}, 1000)"`,
      port: 1,
      onStdout: (text) => {
        received += text;
      },
    });
    await eventually(() => expect(received).toContain('LAST'), 10_000);
    const log = path.join(root.rootDir, sandbox.id, 'logs', 'app.stdout.log');
    await eventually(() => expect(fs.statSync(log).size).toBeLessThanOrEqual(64 * 1024));
    const text = fs.readFileSync(log, 'utf8');
    expect(text).toMatch(/^\[coderunner: earlier output removed/);
    expect(text.trimEnd().endsWith('LAST')).toBe(true);
    // Lines cut while the file was trimmed can only be missing from the file, not mangled.
    expect(received.length).toBeGreaterThan(1024 * 1024 * 0.9);
    expect(received).toContain(`${'.'.repeat(123)}8191\n`);

    // Command output goes to its own bounded log.
    const result = await sandbox.run(`node -e "for (let i = 0; i < 4096; i++) console.log('y'.repeat(255))"`);
    expect(result.exitCode).toBe(0);
    expect(result.stdout.length).toBe(64 * 1024);
    expect(fs.statSync(path.join(root.rootDir, sandbox.id, 'logs', 'commands.log')).size).toBeLessThanOrEqual(
      64 * 1024,
    );
  });
});

describe('local provider: output faster than it is read', () => {
  const rate = { bytesPerSecond: 256 * 1024, burstBytes: 256 * 1024 };
  const flood = () =>
    createLocalProvider({
      rootDir: root.rootDir,
      logMaxBytes: 256 * 1024,
      outputRate: rate,
      killGraceMs: 500,
    });

  it("an app's flood is read at the output rate: the rest skipped and said, the file bounded, stop prompt", async () => {
    const sandbox = await flood().create({ metadata: metadata() });
    created.push(sandbox);
    let received = 0;
    let text = '';
    const began = Date.now();
    await sandbox.startApp({
      command: 'exec yes flood',
      port: 1,
      onStdout: (chunk) => {
        received += chunk.length;
        if (text.length < 4 * 1024 * 1024) text += chunk;
      },
    });
    await new Promise((r) => setTimeout(r, 1_500));
    const stopping = Date.now();
    await sandbox.stopApp();
    const stopMs = Date.now() - stopping;
    const elapsed = (Date.now() - began) / 1000;
    // Before: every byte was read (GBs in seconds), a core spent on it, and stopApp read them all.
    expect(received).toBeLessThanOrEqual(rate.burstBytes + rate.bytesPerSecond * elapsed + 64 * 1024);
    expect(text).toMatch(
      /\[coderunner: \d+\.\d MB of output skipped: the app wrote more than its log is read/,
    );
    expect(stopMs).toBeLessThan(10_000);
    const log = path.join(root.rootDir, sandbox.id, 'logs', 'app.stdout.log');
    expect(fs.statSync(log).size).toBeLessThanOrEqual(256 * 1024 + 1024);
  });

  it("a command's flood is slowed to the output rate, and all of it is read", async () => {
    const sandbox = await flood().create({ metadata: metadata() });
    created.push(sandbox);
    let received = 0;
    const began = Date.now();
    const result = await sandbox.run('yes 0123456789abcde | head -c 1048576', {
      onStdout: (chunk) => {
        received += chunk.length;
      },
    });
    expect(result.exitCode).toBe(0);
    expect(received).toBe(1024 * 1024);
    // 256 KB at once, then 768 KB at 256 KB/s: 3 s, less what the pipes and stream buffers hold when
    // the command ends (read without waiting) and what the budget earned meanwhile: 2-2.5 s here.
    // A lower bound that the budget sets; unthrottled, it took 0.07 s.
    expect(Date.now() - began).toBeGreaterThanOrEqual(1_500);
  });
});

describe('local provider: commands', () => {
  it('runs commands in the app folder with a clean environment and returns exit codes and output', async () => {
    const sandbox = await newSandbox({}, { FROM_SANDBOX: 'yes' });
    await sandbox.writeFiles([
      { path: 'bin/hello.sh', data: '#!/bin/sh\necho "hello $1"\n', mode: 0o755 },
      { path: 'sub/data.txt', data: 'data' },
    ]);
    const chunks: string[] = [];
    const result = await sandbox.run('./bin/hello.sh world; echo oops >&2; id -u; env; exit 7', {
      envs: { FROM_COMMAND: 'also' },
      onStdout: (text) => chunks.push(text),
    });
    expect(result.exitCode).toBe(7);
    expect(result.stdout).toContain('hello world');
    expect(result.stderr).toBe('oops\n');
    expect(chunks.join('')).toBe(result.stdout);
    expect(result.stdout).toContain('FROM_SANDBOX=yes');
    expect(result.stdout).toContain('FROM_COMMAND=also');
    expect(result.stdout).not.toContain(SECRET);
    const uid = Number(result.stdout.split('\n')[1]);
    if (isRoot) expect(uid).not.toBe(0);
    else expect(uid).toBe(process.getuid?.());
    expect((await sandbox.run('cat data.txt', { cwd: 'sub' })).stdout).toBe('data');
    await expect(sandbox.run('true', { cwd: '../..' })).rejects.toThrow(SandboxError);
    await expect(sandbox.run('true', { cwd: 'missing' })).rejects.toThrow(/does not exist/);
  });

  it('kills the whole group of a command that times out', async () => {
    const sandbox = await newSandbox();
    const started = Date.now();
    const error = await sandbox
      .run('echo $$ > run.pid; echo before; sleep 1000 & sleep 1001', { timeoutMs: 500 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandTimeoutError);
    expect((error as CommandTimeoutError).stdout).toBe('before\n');
    expect(Date.now() - started).toBeLessThan(5_000);
    const pgid = Number(fs.readFileSync(path.join(appDir(sandbox), 'run.pid'), 'utf8'));
    if (!isolated) expect(groupMembers(pgid)).toEqual([]);
    expect(markedProcesses(sandbox.id)).toEqual([]);
  });

  it('returns when a command ends, and stops what it left running in the background', async () => {
    const sandbox = await newSandbox();
    const started = Date.now();
    const result = await sandbox.run('echo $$ > run.pid; sleep 1000 & echo done');
    expect(result).toEqual({ exitCode: 0, stdout: 'done\n', stderr: '' });
    expect(Date.now() - started).toBeLessThan(5_000);
    const pgid = Number(fs.readFileSync(path.join(appDir(sandbox), 'run.pid'), 'utf8'));
    if (!isolated) expect(groupMembers(pgid)).toEqual([]);
    expect(markedProcesses(sandbox.id)).toEqual([]);
  });

  it('refuses file paths outside the app folder', async () => {
    const sandbox = await newSandbox();
    await expect(sandbox.writeFiles([{ path: '../escape.txt', data: 'x' }])).rejects.toThrow(/outside/);
    await expect(sandbox.writeFiles([{ path: '/tmp/escape.txt', data: 'x' }])).rejects.toThrow(/outside/);
    expect(fs.existsSync(path.join(root.rootDir, sandbox.id, 'escape.txt'))).toBe(false);
  });

  it.runIf(isRoot)(
    'writes files with the sandbox user rights, so a planted symlink leads nowhere',
    async () => {
      const sandbox = await newSandbox();
      const outside = path.join(root.base, 'outside');
      fs.mkdirSync(outside, { mode: 0o755 });
      await sandbox.run(`ln -s ${outside} planted`);
      await expect(sandbox.writeFiles([{ path: 'planted/owned.txt', data: 'x' }])).rejects.toThrow(
        SandboxError,
      );
      expect(fs.readdirSync(outside)).toEqual([]);
      // Files it can write are the sandbox user's.
      await sandbox.writeFiles([{ path: 'mine.txt', data: 'x', mode: 0o600 }]);
      const stat = fs.statSync(path.join(appDir(sandbox), 'mine.txt'));
      expect(stat.uid).not.toBe(0);
      expect(stat.mode & 0o777).toBe(0o600);
    },
  );
});

/**
 * An app started by another server process that has exited since (fixtures/local/start-app.ts), seen
 * through a fresh provider, as a restarted server sees it.
 */
async function appOfAnEarlierServer() {
  const port = await findFreePort(APP_HOST);
  const started = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', path.join(fixtureDir('.'), 'start-app.ts'), root.rootDir, String(port)],
    { cwd: path.resolve(import.meta.dirname, '..') },
  );
  const { id, pid } = JSON.parse(started.stdout) as { id: string; pid: number };
  const sandbox = await createLocalProvider({ rootDir: root.rootDir, killGraceMs: 500 }).connect(id);
  created.push(sandbox);
  return { id, pid, port, sandbox };
}

describe('local provider: lifecycle', () => {
  it('connect() from a fresh provider sees the running app and can stop it', async () => {
    const sandbox = await newSandbox();
    await sandbox.writeFiles(fixtureFiles('node-hello'));
    const app = await startAndWait(sandbox, 'node server.js');

    const fresh = createLocalProvider({ rootDir: root.rootDir });
    const again = await fresh.connect(sandbox.id);
    expect(again.metadata).toEqual(metadata());
    expect(await again.isAppRunning()).toBe(true);
    expect(await again.getApp()).toEqual(app);
    await again.stopApp();
    expect(await sandbox.isAppRunning()).toBe(false);
    expect(isAlive(app.pid!)).toBe(false);
  });

  it('an app outlives the server process that started it; a restarted server finds it and stops it', async () => {
    const { id, pid, port, sandbox } = await appOfAnEarlierServer();
    expect(await sandbox.isAppRunning()).toBe(true);
    expect(await sandbox.getApp()).toEqual({ port, internalUrl: `http://${APP_HOST}:${port}`, pid });
    await sandbox.waitUntilReady({ port, internalUrl: `http://${APP_HOST}:${port}` }, { timeoutMs: 60_000 });
    // It logs on every request into a file nobody follows, and keeps running.
    for (let i = 0; i < 3; i++)
      expect(await (await fetch(`http://${APP_HOST}:${port}/r${i}`)).text()).toBe('still here');
    await eventually(() =>
      expect(fs.readFileSync(path.join(root.rootDir, id, 'logs', 'app.stdout.log'), 'utf8')).toContain(
        'request /r2',
      ),
    );
    await sandbox.stopApp();
    expect(isAlive(pid)).toBe(false);
    expect(await sandbox.isAppRunning()).toBe(false);
  });

  it.skipIf(!isolated)(
    'a restarted server brings back the network helper of an app it finds without one',
    async () => {
      const { id, port, sandbox } = await appOfAnEarlierServer();
      await sandbox.waitUntilReady(
        { port, internalUrl: `http://${APP_HOST}:${port}` },
        { timeoutMs: 60_000 },
      );
      const record = () =>
        JSON.parse(fs.readFileSync(path.join(root.rootDir, id, 'sandbox.json'), 'utf8')) as {
          isolation: { outbound: { pid: number; spec: string } | null };
        };
      const helper = record().isolation.outbound!;
      expect(helper.spec).toBe(`out: in:${APPS_ADDRESS}/${port}`);
      // Ended for good (not merely unreadable while it exits): as the provider itself tells.
      const ended = (pid: number) => {
        try {
          return /^\S+ \(.*\) [ZXx]/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
        } catch {
          return true;
        }
      };
      process.kill(helper.pid, 'SIGKILL');
      await eventually(() => expect(ended(helper.pid)).toBe(true));
      await expect(fetch(`http://${APP_HOST}:${port}/gone`)).rejects.toThrow();
      // The next look at the app (e.g. the proxy resolving its URL) starts it again.
      expect(await sandbox.getApp()).toMatchObject({ port });
      const again = record().isolation.outbound!;
      expect(again.pid).not.toBe(helper.pid);
      expect(again.spec).toBe(`out: in:${APPS_ADDRESS}/${port}`);
      expect(await (await fetch(`http://${APP_HOST}:${port}/back`)).text()).toBe('still here');
      // Gone again at once: brought back again (only a failed attempt holds the next one off).
      process.kill(again.pid, 'SIGKILL');
      await eventually(() => expect(ended(again.pid)).toBe(true));
      expect(await sandbox.getApp()).toMatchObject({ port });
      const third = record().isolation.outbound!;
      expect(third.pid).not.toBe(again.pid);
      expect(await (await fetch(`http://${APP_HOST}:${port}/third`)).text()).toBe('still here');
    },
  );

  it.skipIf(!isolated)(
    "an app published by an earlier version on 127.0.0.1 (the dashboard's address) is moved to the apps' address",
    async () => {
      const { id, port, sandbox } = await appOfAnEarlierServer();
      await sandbox.waitUntilReady(
        { port, internalUrl: `http://${APP_HOST}:${port}` },
        { timeoutMs: 60_000 },
      );
      const file = path.join(root.rootDir, id, 'sandbox.json');
      const record = () => JSON.parse(fs.readFileSync(file, 'utf8'));
      // What an earlier version left: its helper publishing the app on 127.0.0.1, recorded as "in:<port>".
      const current = record().isolation.outbound;
      process.kill(current.pid, 'SIGKILL');
      await eventually(() => expect(identify(current.pid)).toBeNull());
      const pidFile = path.join(root.rootDir, id, 'old-pasta.pid');
      await promisify(execFile)('pasta', [
        ...['--quiet', '--config-net', '--no-map-gw', '-4', '--no-icmp', '-t', `127.0.0.1/${port}:${port}`],
        ...['-T', 'none', '-u', 'none', '-U', 'none', '--runas', '0', '--pid', pidFile],
        ...['--netns', `/run/netns/${record().isolation.netns}`],
      ]);
      const old = identify(Number(fs.readFileSync(pidFile, 'utf8').trim()))!;
      const before = record();
      fs.writeFileSync(
        file,
        JSON.stringify({
          ...before,
          isolation: { ...before.isolation, outbound: { ...old, spec: `out: in:${port}` } },
        }),
      );
      expect(await (await fetch(`http://127.0.0.1:${port}/old`)).text()).toBe('still here');
      // The next look at the app (the proxy resolving its URL) replaces that helper.
      expect(await sandbox.getApp()).toMatchObject({ port, internalUrl: `http://${APPS_ADDRESS}:${port}` });
      expect(record().isolation.outbound.spec).toBe(`out: in:${APPS_ADDRESS}/${port}`);
      await eventually(() => expect(identify(old.pid)).toBeNull());
      await expect(fetch(`http://127.0.0.1:${port}/gone`)).rejects.toThrow();
      expect(await (await fetch(`http://${APPS_ADDRESS}:${port}/moved`)).text()).toBe('still here');
    },
  );

  it('followApp: a restarted server follows the output and the exit of an app it did not start', async () => {
    const { pid, port, sandbox } = await appOfAnEarlierServer();
    await sandbox.waitUntilReady({ port, internalUrl: `http://${APP_HOST}:${port}` }, { timeoutMs: 60_000 });
    await fetch(`http://${APP_HOST}:${port}/earlier`);

    let stdout = '';
    const exits: unknown[] = [];
    const follow = {
      onStdout: (text: string) => {
        stdout += text;
      },
      onExit: (info: unknown) => exits.push(info),
    };
    expect(await sandbox.followApp(follow)).toBe(true);
    expect(await sandbox.followApp(follow), 'already followed').toBe(false);
    await fetch(`http://${APP_HOST}:${port}/later`);
    await eventually(() => expect(stdout).toContain('request /later'));
    expect(stdout, 'output from before following is not replayed').not.toContain('/earlier');

    process.kill(pid, 'SIGTERM'); // it ends on its own, as far as this server can tell
    await eventually(() => expect(exits).toEqual([{ exitCode: null, signal: null }]));
    expect(await sandbox.isAppRunning()).toBe(false);
    expect(await sandbox.followApp(follow), 'no app runs').toBe(false);
  });

  it('followApp: false for an app this process started; stopApp on a followed app reports no exit', async () => {
    const own = await newSandbox();
    await own.writeFiles(fixtureFiles('node-hello'));
    await startAndWait(own, 'node server.js');
    expect(await own.followApp({}), 'startApp already follows it').toBe(false);

    const { pid, sandbox } = await appOfAnEarlierServer();
    const exits: unknown[] = [];
    expect(await sandbox.followApp({ onExit: (info) => exits.push(info) })).toBe(true);
    await sandbox.stopApp();
    expect(isAlive(pid)).toBe(false);
    await new Promise((r) => setTimeout(r, 1_200)); // longer than the exit check's period
    expect(exits, 'we stopped it: not an exit of its own').toEqual([]);
  });

  it('does not take a reused pid for the app', async () => {
    const sandbox = await newSandbox();
    // Some unrelated process that happens to have the recorded pid now.
    const stranger = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const recordFile = path.join(root.rootDir, sandbox.id, 'sandbox.json');
      const record = JSON.parse(fs.readFileSync(recordFile, 'utf8'));
      const bootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      for (const app of [
        { startTime: '1', bootId }, // same pid, started at another time
        { startTime: '1', bootId: 'another-boot' },
      ]) {
        record.app = {
          pid: stranger.pid,
          port: 1,
          command: 'x',
          startedAt: new Date().toISOString(),
          ...app,
        };
        fs.writeFileSync(recordFile, JSON.stringify(record));
        const fresh = await createLocalProvider({ rootDir: root.rootDir }).connect(sandbox.id);
        expect(await fresh.isAppRunning()).toBe(false);
        await fresh.stopApp();
        expect(isAlive(stranger.pid!)).toBe(true);
      }
    } finally {
      stranger.kill('SIGKILL');
    }
  });

  it('lists sandboxes by metadata', async () => {
    const a = await newSandbox({ projectId: 'p-list-a', deploymentId: 'd-a' });
    const b = await newSandbox({ projectId: 'p-list-b', deploymentId: 'd-b' });
    const c = await newSandbox({ projectId: 'p-list-b', deploymentId: 'd-c', role: 'db' });
    const ids = async (filter?: Partial<SandboxMetadata>) =>
      (await provider.list(filter ? { metadata: filter } : undefined)).map((s) => s.id).sort();
    expect(await ids({ projectId: 'p-list-a' })).toEqual([a.id]);
    expect(await ids({ projectId: 'p-list-b' })).toEqual([b.id, c.id].sort());
    expect(await ids({ projectId: 'p-list-b', role: 'db' })).toEqual([c.id]);
    expect(await ids({ projectId: 'nobody' })).toEqual([]);
    expect(await ids()).toEqual(expect.arrayContaining([a.id, b.id, c.id]));
    const [info] = await provider.list({ metadata: { deploymentId: 'd-a' } });
    expect(info?.metadata).toEqual(metadata({ projectId: 'p-list-a', deploymentId: 'd-a' }));
    expect(info?.startedAt).toBeInstanceOf(Date);
  });

  it('kill() stops everything, removes the folder, and is idempotent', async () => {
    const sandbox = await newSandbox();
    await sandbox.writeFiles(fixtureFiles('node-hello'));
    const app = await startAndWait(sandbox, 'node server.js');
    const folder = path.join(root.rootDir, sandbox.id);
    const running = sandbox.run('sleep 1000').catch((e: unknown) => e);
    await eventually(() => expect(sandboxProcesses(folder).length).toBeGreaterThanOrEqual(2));

    await sandbox.kill();
    expect(fs.existsSync(folder)).toBe(false);
    expect(sandboxProcesses(folder)).toEqual([]);
    expect(isAlive(app.pid!)).toBe(false);
    expect(await running).toBeInstanceOf(SandboxNotFoundError);
    await sandbox.kill();
    expect(await provider.kill(sandbox.id)).toBe(false);
    await expect(provider.connect(sandbox.id)).rejects.toThrow(SandboxNotFoundError);
    await expect(sandbox.run('true')).rejects.toThrow(SandboxNotFoundError);
    expect((await provider.list()).map((s) => s.id)).not.toContain(sandbox.id);
  });

  it('provider.kill(id) says whether the sandbox existed; unknown ids are not found', async () => {
    const sandbox = await provider.create({ metadata: metadata() });
    expect(await provider.kill(sandbox.id)).toBe(true);
    expect(await provider.kill(sandbox.id)).toBe(false);
    expect(await provider.kill('local-000000000000')).toBe(false);
    expect(await provider.kill('../../etc')).toBe(false);
    await expect(provider.connect('local-000000000000')).rejects.toThrow(SandboxNotFoundError);
    await expect(provider.connect('../sandboxes/..')).rejects.toThrow(SandboxNotFoundError);
  });

  it('findFreePort() gives a port that can be listened on', async () => {
    const port = await findFreePort();
    expect(port).toBeGreaterThan(1024);
    const sandbox = await newSandbox();
    await sandbox.writeFiles(fixtureFiles('node-hello'));
    const app = await sandbox.startApp({ command: 'node server.js', port });
    await sandbox.waitUntilReady(app, { timeoutMs: 10_000 });
  });
});
