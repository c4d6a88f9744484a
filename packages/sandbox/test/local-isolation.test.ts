/**
 * Hostile tenants on the local provider (issue #10): a victim sandbox and an attacker sandbox, real
 * namespaces, cgroups and processes. Each attack here worked before isolation; each is now blocked.
 * Runs where isolation is available (as root with bubblewrap and pasta, as in CI); elsewhere the
 * suite is skipped, and the provider says why (see the last test).
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { APPS_ADDRESS, createLocalProvider, findFreePort, type LocalProvider } from '../src/local';
import type { Sandbox, SandboxMetadata } from '../src/types';
import { eventually, markedProcesses, processes, sandboxProcesses, tempRoot } from './fixtures/local/helpers';

const root = tempRoot('coderunner-iso-');
const isolated = createLocalProvider({ rootDir: root.rootDir }).isolation().mode === 'sandbox';
const VICTIM_SECRET = `victim-password-${process.pid}-${Date.now()}`;
const TIGHT = { memoryMb: 96, pids: 32, cpus: 1, diskMb: 8, tmpMb: 16 };

let provider: LocalProvider;
let tight: LocalProvider;
const created: Sandbox[] = [];
/** Host loopback services a tenant must not reach: the "control plane" (on every address) and a "database". */
let controlPlane: net.Server;
let controlPort: number;
let database: net.Server;
let databasePort: number;
let otherDatabase: net.Server;
let otherDatabasePort: number;

const metadata = (projectId: string): SandboxMetadata => ({
  deploymentId: `d-${projectId}`,
  projectId,
  role: 'app',
});

function listen(host: string): Promise<[net.Server, number]> {
  return new Promise((resolve) => {
    const server = net.createServer((socket) => socket.end('hello from the host\n'));
    server.listen(0, host, () => resolve([server, (server.address() as net.AddressInfo).port]));
  });
}

async function newSandbox(
  p: LocalProvider,
  projectId: string,
  envs?: Record<string, string>,
): Promise<Sandbox> {
  const sandbox = await p.create({ metadata: metadata(projectId), envs });
  created.push(sandbox);
  return sandbox;
}

const VICTIM_APP = `require('http').createServer((q, r) => r.end('victim')).listen(process.env.PORT, '127.0.0.1');`;

/** Start an app and wait until the host reaches it. */
async function startApp(sandbox: Sandbox, command: string) {
  const port = await findFreePort(APPS_ADDRESS);
  const app = await sandbox.startApp({ command, port });
  await sandbox.waitUntilReady(app, { timeoutMs: 20_000 });
  return app;
}

async function body(url: string): Promise<string> {
  return (await fetch(url, { signal: AbortSignal.timeout(5_000) })).text();
}

/** A Node script run in the sandbox that prints one JSON document. */
async function probe(
  sandbox: Sandbox,
  script: string,
  envs?: Record<string, string>,
): Promise<Record<string, unknown>> {
  await sandbox.writeFiles([{ path: 'probe.js', data: script }]);
  const result = await sandbox.run('node probe.js', { envs, timeoutMs: 60_000 });
  expect(result.exitCode, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

/** Tries a TCP connection to each port of 127.0.0.1 (and of `host` for `hostPorts`): true = connected. */
const CONNECT = `
const net = require('net');
const tryConnect = (host, port) => new Promise((resolve) => {
  const s = net.connect({ host, port });
  const done = (ok) => { s.destroy(); resolve(ok); };
  s.setTimeout(3000, () => done(false));
  s.once('connect', () => done(true));
  s.once('error', () => done(false));
});
`;

beforeAll(async () => {
  if (!isolated) return;
  provider = createLocalProvider({
    rootDir: root.rootDir,
    killGraceMs: 500,
    databasePorts: () => [databasePort],
  });
  tight = createLocalProvider({ rootDir: root.rootDir, killGraceMs: 500, limits: () => TIGHT });
  [controlPlane, controlPort] = await listen('0.0.0.0');
  [database, databasePort] = await listen('127.0.0.1');
  [otherDatabase, otherDatabasePort] = await listen('127.0.0.1');
});

afterEach(async () => {
  await Promise.all(created.splice(0).map((s) => s.kill()));
});

afterAll(async () => {
  controlPlane?.close();
  database?.close();
  otherDatabase?.close();
  if (isolated) await eventually(() => expect(sandboxProcesses(root.rootDir)).toEqual([]), 5_000);
  root.cleanup();
});

describe.skipIf(!isolated)('hostile tenants on the local provider', () => {
  it('each sandbox has its own uid, a 0700 folder, and sees neither other processes nor this machine', async () => {
    const victim = await newSandbox(provider, 'victim', {
      DATABASE_URL: `postgres://v:${VICTIM_SECRET}@127.0.0.1:${databasePort}/v`,
    });
    const attacker = await newSandbox(provider, 'attacker');
    await victim.writeFiles([{ path: 'server.js', data: VICTIM_APP }]);
    const app = await startApp(victim, 'node server.js');
    const victimFolder = path.join(root.rootDir, victim.id);
    expect(fs.statSync(victimFolder).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(victimFolder, 'app')).mode & 0o777).toBe(0o700);

    const seen = await probe(
      attacker,
      `const fs = require('fs');
const pids = fs.readdirSync('/proc').filter((n) => /^\\d+$/.test(n));
let secrets = 0;
for (const pid of pids) { try { if (fs.readFileSync('/proc/' + pid + '/environ', 'utf8').includes(${JSON.stringify(VICTIM_SECRET)})) secrets++; } catch {} }
const exists = (p) => { try { fs.statSync(p); return true; } catch { return false; } };
console.log(JSON.stringify({
  uid: process.getuid(), pids: pids.length, secrets,
  victimFolder: exists(${JSON.stringify(victimFolder)}), victimPid: exists('/proc/${app.pid}/cwd/server.js'),
  repo: exists(${JSON.stringify(path.resolve(import.meta.dirname, '..'))}), root: exists(${JSON.stringify(root.rootDir)}),
  home: process.env.HOME, cwd: process.cwd(),
  writeUsr: (() => { try { fs.writeFileSync('/usr/pwned', 'x'); return true; } catch { return false; } })(),
}));`,
    );
    const victimUid = fs.statSync(path.join(victimFolder, 'app')).uid;
    expect(seen.uid).not.toBe(0);
    expect(seen.uid).not.toBe(victimUid);
    expect(victimUid).not.toBe(0);
    // Its own processes only (the namespace's init, the shell, node).
    expect(seen.pids as number).toBeLessThanOrEqual(4);
    expect(seen).toMatchObject({
      secrets: 0,
      victimFolder: false,
      victimPid: false,
      repo: false,
      root: false,
      home: '/sandbox/home',
      cwd: '/sandbox/app',
      writeUsr: false,
    });
  });

  it('reaches the internet and its own database port, and no other port of this machine', async () => {
    const victimPort = await findFreePort(APPS_ADDRESS);
    const victim = await newSandbox(provider, 'victim');
    await victim.writeFiles([{ path: 'server.js', data: VICTIM_APP }]);
    const dbEnv = { DATABASE_URL: `postgres://v:${VICTIM_SECRET}@127.0.0.1:${databasePort}/v` };
    const victimApp = await victim.startApp({ command: 'node server.js', port: victimPort, envs: dbEnv });
    await victim.waitUntilReady(victimApp, { timeoutMs: 20_000 });
    const attacker = await newSandbox(provider, 'attacker');
    const external = Object.values(os.networkInterfaces())
      .flat()
      .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
    const ports = {
      postgres: 5432,
      controlPlane: controlPort,
      victim: victimPort,
      database: databasePort,
      otherDatabase: otherDatabasePort,
    };
    const script = `${CONNECT}
(async () => {
  const out = {};
  for (const [name, port] of Object.entries(${JSON.stringify(ports)})) out[name] = await tryConnect('127.0.0.1', port);
  out.victimOnAppsAddress = await tryConnect(${JSON.stringify(APPS_ADDRESS)}, ${victimPort});
  ${external ? `out.controlPlaneOnHostAddress = await tryConnect(${JSON.stringify(external)}, ${controlPort});` : ''}
  console.log(JSON.stringify(out));
})();`;
    const fromAttacker = await probe(attacker, script);
    expect(fromAttacker).toEqual({
      postgres: false,
      controlPlane: false,
      victim: false,
      database: false,
      otherDatabase: false,
      victimOnAppsAddress: false,
      ...(external ? { controlPlaneOnHostAddress: false } : {}),
    });
    // The victim's database URL opens its port (only), at the address the URL names.
    const fromVictim = await probe(victim, script, dbEnv);
    expect(fromVictim).toMatchObject({
      postgres: false,
      controlPlane: false,
      database: true,
      otherDatabase: false,
    });

    // Outbound internet: npm reaches the registry (installs need it).
    const online = await attacker.run('npm view is-number@7.0.0 version', { timeoutMs: 120_000 });
    expect(online.stdout.trim(), online.stderr).toBe('7.0.0');
  });

  it('the first upload is its own from the start, and its first command finds its network up', async () => {
    // The network takes its time to come up here (the server's answer on the database port is slow).
    const slowNetwork = createLocalProvider({
      rootDir: root.rootDir,
      killGraceMs: 500,
      databasePorts: () => new Promise((resolve) => setTimeout(() => resolve([databasePort]), 300)),
    });
    const sandbox = await newSandbox(slowNetwork, 'fresh');
    const folder = path.join(root.rootDir, sandbox.id, 'app');
    await expect(sandbox.writeFiles([{ path: '../escape.txt', data: 'x' }])).rejects.toThrow(/outside/);
    expect(fs.existsSync(path.join(root.rootDir, sandbox.id, 'escape.txt'))).toBe(false);
    const first = `${CONNECT}tryConnect('127.0.0.1', ${databasePort}).then((ok) => console.log(JSON.stringify({ ok })));`;
    await sandbox.writeFiles([
      { path: 'first.js', data: first },
      { path: 'deep/er/tool.sh', data: 'echo hi', mode: 0o4755 },
    ]);
    const uid = fs.statSync(folder).uid;
    for (const file of ['first.js', 'deep', 'deep/er', 'deep/er/tool.sh'])
      expect(fs.lstatSync(path.join(folder, file)).uid, file).toBe(uid);
    // No setuid bit from an upload.
    expect(fs.statSync(path.join(folder, 'deep/er/tool.sh')).mode & 0o7777).toBe(0o755);
    // Its very first command (here `cat`, which runs within a millisecond) finds its database port
    // listening inside: the network came up before it ran.
    const dbEnv = { DATABASE_URL: `postgres://f:secret@127.0.0.1:${databasePort}/f` };
    const table = await sandbox.run('cat /proc/net/tcp', { envs: dbEnv });
    const hexPort = databasePort.toString(16).toUpperCase().padStart(4, '0');
    expect(table.stdout).toMatch(new RegExp(`0100007F:${hexPort} 00000000:0000 0A`));
    const result = await sandbox.run('node first.js', { envs: dbEnv });
    expect(JSON.parse(result.stdout), result.stderr).toEqual({ ok: true });
    // The pipe it waited on (fd 3) is closed before its code runs.
    const fds = await sandbox.run('ls /proc/$$/fd');
    expect(fds.stdout.split('\n')).toEqual(expect.arrayContaining(['0', '1', '2']));
    expect(fds.stdout.split('\n')).not.toContain('3');
    expect(fds.stdout.split('\n')).not.toContain('4'); // nor the one its environment came on
    // Its code has run: a later upload goes through a process of its own uid, and still lands.
    await sandbox.writeFiles([{ path: 'first.js', data: 'console.log(1)' }]);
    expect(fs.readFileSync(path.join(folder, 'first.js'), 'utf8')).toBe('console.log(1)');
    expect(fs.lstatSync(path.join(folder, 'first.js')).uid).toBe(uid);
  });

  it("the tenant's variables (LD_PRELOAD too) reach only its own processes, never a root one, byte for byte", async () => {
    // Root starts every sandboxed process (the shell joining the cgroups, nsenter, bubblewrap, the
    // gate, setpriv): a tenant variable such as LD_PRELOAD in their environment ran the tenant's
    // library as root with every capability, i.e. the whole machine.
    const mark = `tenant-${process.pid}-${Date.now()}`;
    // The server's own secrets stay out of the root helpers too (pasta handles the tenant's traffic).
    process.env.SERVER_ONLY_SECRET = mark;
    const tenant = { TENANT_MARK: mark, LD_PRELOAD: '/sandbox/app/evil.so', LD_LIBRARY_PATH: '/sandbox/app' };
    const sandbox = await newSandbox(provider, 'envs', tenant);
    await sandbox.writeFiles([{ path: 'server.js', data: VICTIM_APP }]);
    const app = await startApp(sandbox, 'node server.js');
    expect(await body(`http://${APPS_ADDRESS}:${app.port}/`)).toBe('victim');
    const uidOf = (pid: number) =>
      Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    const sandboxUid = fs.statSync(path.join(root.rootDir, sandbox.id, 'app')).uid;
    const withMark = processes().filter((p) => p.environ.includes(`TENANT_MARK=${mark}`));
    expect(withMark.length).toBeGreaterThan(0); // the app has it
    for (const p of withMark) expect(uidOf(p.pid), `pid ${p.pid}`).toBe(sandboxUid);
    // The root stages that stay (bubblewrap outside and inside) are found by the markers, without
    // any of the tenant's variables.
    const rootStages = markedProcesses(sandbox.id).filter((pid) => uidOf(pid) === 0);
    expect(rootStages.length).toBeGreaterThan(0);
    for (const pid of rootStages) {
      const environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8');
      expect(environ).not.toMatch(/TENANT_MARK|LD_PRELOAD|LD_LIBRARY_PATH|SERVER_ONLY_SECRET/);
    }
    const pasta = Number(fs.readFileSync(path.join(root.rootDir, sandbox.id, 'pasta.pid'), 'utf8'));
    expect(fs.readFileSync(`/proc/${pasta}/environ`, 'utf8')).not.toContain(mark);
    delete process.env.SERVER_ONLY_SECRET;
    // Inside, the tenant's own commands get every variable, whatever its characters.
    const weird = `it's "quoted" $(id) \`id\` \\ $HOME\nsecond line\t; exit 7`;
    const result = await sandbox.run('printenv WEIRD; printenv EMPTY; printenv LD_LIBRARY_PATH', {
      envs: { WEIRD: weird, EMPTY: '', LD_PRELOAD: '' },
    });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe(`${weird}\n\n/sandbox/app\n`);
  });

  it('kill -9 -1 and a bind of the victim port leave the victim RUNNING and answering at its URL', async () => {
    const victim = await newSandbox(provider, 'victim');
    await victim.writeFiles([{ path: 'server.js', data: VICTIM_APP }]);
    const app = await startApp(victim, 'node server.js');
    const attacker = await newSandbox(provider, 'attacker');
    // From its app, as in the attack: every process it may signal gets SIGKILL (the kernel spares the caller).
    let attackerLog = '';
    await attacker.startApp({
      command: 'sleep 1000 & sleep 0.2; kill -9 -1; echo "survived: $(jobs -p | wc -l)"; exec sleep 1000',
      port: await findFreePort(),
      onStdout: (text) => {
        attackerLog += text;
      },
    });
    await eventually(() => expect(attackerLog).toContain('survived'), 20_000);
    await attacker.stopApp();
    // The attacker listens on the victim's port number (in its own network): the victim's URL is unmoved.
    await attacker.writeFiles([
      {
        path: 'evil.js',
        data: `require('http').createServer((q, r) => r.end('attacker')).listen(${app.port}, '127.0.0.1');`,
      },
    ]);
    const evilPort = await findFreePort();
    await attacker.startApp({ command: 'node evil.js', port: evilPort });
    await eventually(() => expect(markedProcesses(attacker.id).length).toBeGreaterThan(0));
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await victim.isAppRunning()).toBe(true);
    for (let i = 0; i < 3; i++) expect(await body(app.internalUrl)).toBe('victim');
  });

  it('a setsid, env -i double-forked survivor is gone after stop and after destroy', async () => {
    const marker = 100_000 + Math.floor(Math.random() * 800_000);
    const sleeping = (n: number) =>
      processes().filter((p) => {
        try {
          return fs.readFileSync(`/proc/${p.pid}/cmdline`, 'utf8') === `sleep\0${n}\0`;
        } catch {
          return false;
        }
      });
    const sandbox = await newSandbox(provider, 'attacker');
    await sandbox.writeFiles([{ path: 'server.js', data: VICTIM_APP }]);
    await startApp(sandbox, `(setsid env -i sh -c 'exec sleep ${marker}' &) ; exec node server.js`);
    await eventually(() => expect(sleeping(marker)).toHaveLength(1));
    await sandbox.stopApp();
    expect(sleeping(marker)).toEqual([]);

    // From a command, too (it returns while its daemon would run on), then destroy.
    await sandbox.run(`(setsid env -i sh -c 'exec sleep ${marker + 1}' > /dev/null 2>&1 &); true`);
    await startApp(
      sandbox,
      `(setsid env -i sh -c 'exec sleep ${marker + 2}' > /dev/null 2>&1 &); exec node server.js`,
    );
    await eventually(() => expect(sleeping(marker + 2)).toHaveLength(1));
    await sandbox.kill();
    expect(sleeping(marker + 1)).toEqual([]);
    expect(sleeping(marker + 2)).toEqual([]);
    expect(markedProcesses(sandbox.id)).toEqual([]);
  });

  it('destroy deletes nothing outside the sandbox, whatever links its code planted or swaps in', async () => {
    // A root-owned 0755 folder elsewhere, as in the attack.
    const outside = path.join(root.base, 'outside');
    fs.mkdirSync(outside, { mode: 0o755 });
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(outside, `f${i}`), 'keep');
    for (let round = 0; round < 4; round++) {
      const sandbox = await newSandbox(provider, 'attacker');
      // Planted links (to the host path and to /), a folder it made read-only, and a process that keeps
      // swapping subfolders for links while destroy runs.
      await sandbox.run(
        `mkdir -p a/b/c locked; ln -s ${outside} link; ln -s / rootlink; ln -s ${outside} a/b/c/deep; touch locked/x; chmod 500 locked`,
      );
      await sandbox.writeFiles([{ path: 'server.js', data: VICTIM_APP }]);
      await startApp(
        sandbox,
        `(while :; do for i in 1 2 3 4 5; do rm -rf d$i; mkdir -p d$i/x; touch d$i/x/y; rm -rf d$i; ln -s ${outside} d$i; done; done) & exec node server.js`,
      );
      await sandbox.kill();
      expect(fs.readdirSync(outside).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `f${i}`).sort());
      expect(fs.readdirSync(root.rootDir).filter((n) => n.includes(sandbox.id))).toEqual([]);
    }
  });

  it('memory over the limit: the process is killed and the log says "out of memory (limit N MB)"', async () => {
    const sandbox = await newSandbox(tight, 'hog');
    const hog = `node -e "const a = []; for (;;) a.push(Buffer.alloc(8 << 20).fill(1))"`;
    const result = await sandbox.run(hog, { timeoutMs: 60_000 });
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain(`out of memory (limit ${TIGHT.memoryMb} MB)`);

    // An app: its exit is reported, and the line is in its log.
    let stderr = '';
    const port = await findFreePort();
    const exited = new Promise<unknown>((resolve) => {
      void sandbox.startApp({
        command: `node -e "setTimeout(() => { const a = []; for (;;) a.push(Buffer.alloc(8 << 20).fill(1)); }, 200)"`,
        port,
        onStderr: (text) => {
          stderr += text;
        },
        onExit: resolve,
      });
    });
    await exited;
    expect(stderr).toContain(`out of memory (limit ${TIGHT.memoryMb} MB)`);
  });

  it('a fork bomb is bounded by the process limit, said in the log, and killed with the sandbox', async () => {
    const sandbox = await newSandbox(tight, 'bomb');
    const result = await sandbox.run('for i in $(seq 1 100); do sleep 3 & done; wait', { timeoutMs: 60_000 });
    expect(result.stderr).toContain(`process limit reached (limit ${TIGHT.pids} processes)`);

    let stderr = '';
    const port = await findFreePort();
    await sandbox.startApp({
      // The app's shell, and so its PID namespace, must outlive the bomb: `wait` alone waited only for
      // the first pipeline, which returns as soon as it has put its own in the background, so the shell
      // could exit (and the namespace's end kill the bomb) before the bomb reached the limit; a race the
      // seccomp filter's cost per fork tipped. The sleep started first is what `wait` waits for.
      command: `sleep 1000 & bomb() { bomb | bomb & }; bomb; wait`,
      port,
      onStderr: (text) => {
        stderr += text;
      },
    });
    // Sandboxes are weighted far below everything else on the machine: on a busy one the bomb is slow.
    await eventually(
      () => expect(stderr).toContain(`process limit reached (limit ${TIGHT.pids} processes)`),
      60_000,
    );
    expect(markedProcesses(sandbox.id).length).toBeLessThanOrEqual(TIGHT.pids + 2);
    await sandbox.kill();
    expect(markedProcesses(sandbox.id)).toEqual([]);
  });

  it('/tmp is private and bounded; an app over its disk quota is stopped with a clear log line', async () => {
    const a = await newSandbox(tight, 'disk');
    const b = await newSandbox(tight, 'disk');
    await a.run('echo mine > /tmp/private');
    expect((await b.run('cat /tmp/private')).exitCode).not.toBe(0);
    const full = await a.run(`dd if=/dev/zero of=/tmp/big bs=1M count=${TIGHT.tmpMb * 2}`);
    expect(full.exitCode).not.toBe(0);
    expect(full.stderr).toMatch(/No space left on device/);

    let stderr = '';
    const exited = new Promise<unknown>((resolve) => {
      void a.startApp({
        command: `dd if=/dev/zero of=big bs=1M count=${TIGHT.diskMb * 2} 2>/dev/null; exec sleep 1000`,
        port: 1,
        onStderr: (text) => {
          stderr += text;
        },
        onExit: resolve,
      });
    });
    await exited;
    expect(stderr).toMatch(
      new RegExp(`disk quota exceeded \\(\\d+ MB used, limit ${TIGHT.diskMb} MB\\): the app was stopped`),
    );
  });

  it('an install or build over its disk cap is stopped too, empty files counted', async () => {
    // Before, only a running app was checked: a build had its whole timeout to fill the disk.
    const sandbox = await newSandbox(tight, 'build-disk');
    const quota = new RegExp(
      `disk quota exceeded \\(\\d+ MB used, limit ${TIGHT.diskMb} MB\\): the command was stopped`,
    );
    const big = await sandbox.run(
      `dd if=/dev/zero of=big bs=1M count=${TIGHT.diskMb * 2} 2>/dev/null; sleep 30; echo survived`,
      { timeoutMs: 60_000 },
    );
    expect(big.exitCode).not.toBe(0);
    expect(big.stdout).not.toContain('survived');
    expect(big.stderr).toMatch(quota);
    await sandbox.run('rm -f big');
    // Empty files use no block, but an inode each: 12,000 of them are charged 1 KB each (12 MB).
    const many = await sandbox.run(
      'mkdir -p e && cd e && seq 1 12000 | xargs touch && sleep 30; echo survived',
      {
        timeoutMs: 60_000,
      },
    );
    expect(many.stdout).not.toContain('survived');
    expect(many.stderr).toMatch(quota);
    await sandbox.run('rm -rf e');
    // A file deleted but held open is on the disk all the same.
    const held = await sandbox.run(
      `exec 3<>/sandbox/home/big; rm /sandbox/home/big; head -c ${TIGHT.diskMb * 2 * 1024 * 1024} /dev/zero >&3; sleep 30; echo survived`,
      { timeoutMs: 60_000 },
    );
    expect(held.stdout).not.toContain('survived');
    expect(held.stderr).toMatch(quota);
  });

  it('an app preallocating blocks in its own log file is over its disk cap, and the blocks are given back', async () => {
    const sandbox = await newSandbox(tight, 'log-prealloc');
    let stderr = '';
    // fallocate(KEEP_SIZE) on its stdout: the log's size stays 0, its blocks do not.
    const grab = `import ctypes; libc = ctypes.CDLL(None); libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]; print(libc.fallocate(1, 1, 0, ${TIGHT.diskMb * 4} << 20), flush=True)`;
    const exited = new Promise<unknown>((resolve) => {
      void sandbox.startApp({
        command: `python3 -c '${grab}'; exec sleep 1000`,
        port: 1,
        onStderr: (text) => {
          stderr += text;
        },
        onExit: resolve,
      });
    });
    await exited;
    expect(stderr).toMatch(/disk quota exceeded \(\d+ MB used, limit \d+ MB\): the app was stopped/);
    // Given back right after the stop, which may end the app (and report its exit) a moment before.
    await eventually(() => {
      const log = fs.statSync(path.join(root.rootDir, sandbox.id, 'logs', 'app.stdout.log'));
      expect(log.blocks * 512).toBeLessThanOrEqual(log.size + 1024 * 1024);
    }, 10_000);
  });
});

describe('isolation status', () => {
  it('says which mode is in force, and why not isolated', () => {
    const status = createLocalProvider({ rootDir: root.rootDir }).isolation();
    if (status.mode === 'sandbox') expect(status.missing).toEqual([]);
    else expect(status.missing.length).toBeGreaterThan(0);
    expect(createLocalProvider({ rootDir: root.rootDir, isolation: 'none' }).isolation()).toMatchObject({
      mode: 'none',
      missing: [],
    });
    if (!isolated)
      expect(() => createLocalProvider({ rootDir: root.rootDir, isolation: 'sandbox' }).isolation()).toThrow(
        /CODERUNNER_ISOLATION=sandbox, but this machine lacks/,
      );
  });
});
