import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DEFAULT_OS_USER,
  type EmbeddedPostgres,
  EmbeddedPostgresError,
  type EmbeddedPostgresOptions,
  findFreePort as freePort,
  type SuperviseEvent,
  startEmbeddedPostgres,
} from '../src/index';
import { processAlive } from '../src/processes';

const here = path.dirname(fileURLToPath(import.meta.url));
const script = path.join(here, 'fixtures/start-embedded.ts');
const isRoot = process.getuid?.() === 0;
const env = { port: 'MY_PG_PORT', dataDir: 'MY_DATA_DIR', url: 'MY_DATABASE_URL' };
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-embedded-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Whether the process runs; a zombie does not (an adopted postmaster is not our child: once it has
 * exited, init reaps it, here up to a second later). The package's own definition.
 */
const alive = processAlive;

function postmasterPid(dataDir: string): number {
  return Number(fs.readFileSync(path.join(dataDir, 'pg/postmaster.pid'), 'utf8').split('\n')[0]);
}

/** Started here; stopped (if still ours) after the test. */
async function start(opts: Omit<EmbeddedPostgresOptions, 'env'>): Promise<EmbeddedPostgres> {
  const cluster = await startEmbeddedPostgres({ env, ...opts });
  cleanups.push(() => cluster.stop());
  return cluster;
}

function runScript(args: string[], opts: { uid?: number; gid?: number } = {}): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: here,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...opts,
    env: { ...process.env, HOME: os.tmpdir() },
  });
  cleanups.push(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM'); // lets it stop a cluster it owns
    await new Promise((r) => child.once('exit', r));
  });
  return child;
}

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    child.stderr!.on('data', (d) => {
      err += d;
    });
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${out} ${err}`)));
  });
}

async function query(url: string, sql: string) {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('embedded PostgreSQL', () => {
  it('initialises, serves real SQL on 127.0.0.1 with a password, restarts warm and keeps data', async () => {
    const dataDir = tempDir();
    const port = await freePort();
    let pgdb = await startEmbeddedPostgres({ dataDir, port, env });
    expect(pgdb.mode).toBe('started');
    await query(pgdb.url(), 'CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)');
    expect(fs.statSync(path.join(dataDir, 'pg-superuser-password')).mode & 0o777).toBe(0o600);
    const wrongPassword = pgdb.url().replace(/:\/\/postgres:[^@]+@/, '://postgres:wrong@');
    await expect(query(wrongPassword, 'SELECT 1')).rejects.toThrow(/password authentication failed/);
    await pgdb.stop();
    expect(pgdb.isRunning()).toBe(false);
    pgdb = await start({ dataDir, port });
    expect(await query(pgdb.url(), 'SELECT v FROM kept')).toEqual([{ v: 42 }]);
  });

  it('applies the settings it is given', async () => {
    const pgdb = await start({
      dataDir: tempDir(),
      port: await freePort(),
      settings: { authentication_timeout: '7s' },
    });
    expect(await query(pgdb.url(), 'SHOW authentication_timeout')).toEqual([
      { authentication_timeout: '7s' },
    ]);
  });

  it("says the port is busy, naming the caller's variables, instead of rejecting with undefined", async () => {
    const port = await freePort();
    const blocker = net.createServer().listen(port, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    cleanups.push(() => new Promise<void>((r) => blocker.close(() => r())));
    const err = await startEmbeddedPostgres({ dataDir: tempDir(), port, env }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmbeddedPostgresError);
    expect((err as Error).message).toMatch(
      new RegExp(`port ${port} .*already in use.*set MY_PG_PORT to a free port or set MY_DATABASE_URL`),
    );
  });

  it('says why it cannot use a data folder it cannot write', async () => {
    const file = path.join(tempDir(), 'a-file');
    fs.writeFileSync(file, '');
    const err = await startEmbeddedPostgres({
      dataDir: path.join(file, 'data'),
      port: await freePort(),
      env,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmbeddedPostgresError);
    expect((err as Error).message).toMatch(/cannot write the data folder .*MY_DATA_DIR/);
  });

  it("attaches to a live process's cluster (its port, its password) and never stops it", async () => {
    const dataDir = tempDir();
    const ownerPort = await freePort();
    const owner = runScript([dataDir, String(ownerPort)]);
    const line = await firstLine(owner);
    expect(line).toMatch(new RegExp(`^ready postgres \\d+ ${ownerPort} started \\d+$`));
    const pid = postmasterPid(dataDir);

    // Asked for another port: the folder's running cluster wins.
    const attached = await startEmbeddedPostgres({ dataDir, port: await freePort(), env });
    expect(attached.mode).toBe('attached');
    expect(attached.port).toBe(ownerPort);
    await query(attached.url(), 'CREATE TABLE t (v int)');
    await attached.stop();
    expect(alive(pid)).toBe(true);
    expect(await query(attached.url(), 'SELECT count(*)::int AS n FROM t')).toEqual([{ n: 0 }]);

    // A second process attaches too, and so on: still the same postmaster.
    const second = runScript([dataDir, String(await freePort()), 'once']);
    expect(await firstLine(second)).toMatch(new RegExp(`^ready postgres \\d+ ${ownerPort} attached ${pid}$`));
    await new Promise((r) => second.once('exit', r));
    expect(alive(pid)).toBe(true);
  });

  it('two processes starting one fresh folder at once: one starts it, the other attaches', async () => {
    const dataDir = tempDir();
    const [a, b] = [
      runScript([dataDir, String(await freePort())]),
      runScript([dataDir, String(await freePort())]),
    ];
    const lines = await Promise.all([firstLine(a!), firstLine(b!)]);
    const fields = lines.map((l) => l.split(' ')); // ready <user> <uid> <port> <mode> <postmaster pid>
    expect(fields.map((f) => f[4]).sort()).toEqual(['attached', 'started']);
    expect(fields[0]![3]).toBe(fields[1]![3]);
    expect(fields[0]![5]).toBe(fields[1]![5]);
    expect(fs.readFileSync(path.join(dataDir, 'pg/PG_VERSION'), 'utf8').trim()).toMatch(/^\d+$/);
  });

  it('adopts the postmaster of a SIGKILLed owner (same port), and stops it when done', async () => {
    const dataDir = tempDir();
    const port = await freePort();
    const first = runScript([dataDir, String(port)]);
    expect(await firstLine(first)).toMatch(/^ready postgres/);
    const orphanPid = postmasterPid(dataDir);
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    expect(alive(orphanPid)).toBe(true); // the orphan still holds the folder

    const pgdb = await startEmbeddedPostgres({ dataDir, port, env });
    expect(pgdb.mode).toBe('adopted');
    expect(postmasterPid(dataDir)).toBe(orphanPid);
    expect(await query(pgdb.url(), 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
    const owner = JSON.parse(fs.readFileSync(path.join(dataDir, 'owner'), 'utf8'));
    expect(owner.pid).toBe(process.pid);
    await pgdb.stop();
    expect(alive(orphanPid)).toBe(false);
    expect(fs.existsSync(path.join(dataDir, 'owner'))).toBe(false);
  });

  it("stops a dead owner's postmaster that listens on another port, and starts its own", async () => {
    const dataDir = tempDir();
    const first = runScript([dataDir, String(await freePort())]);
    expect(await firstLine(first)).toMatch(/^ready postgres/);
    const orphanPid = postmasterPid(dataDir);
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));

    const port = await freePort();
    const pgdb = await start({ dataDir, port });
    expect(pgdb.mode).toBe('started');
    expect(pgdb.port).toBe(port);
    expect(alive(orphanPid)).toBe(false);
    expect(await query(pgdb.url(), 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
  });

  it('starts when a stale pid file names a process that is gone', async () => {
    const dataDir = tempDir();
    const port = await freePort();
    const pgdb = await startEmbeddedPostgres({ dataDir, port, env });
    await pgdb.stop();
    const pidFile = path.join(dataDir, 'pg/postmaster.pid');
    fs.writeFileSync(pidFile, `999999\n${path.join(dataDir, 'pg')}\n0\n${port}\n\n127.0.0.1\n`);
    const again = await start({ dataDir, port });
    expect(again.mode).toBe('started');
    expect(await query(again.url(), 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
  });

  it('supervise(): a postmaster killed with SIGKILL is started again, data kept', async () => {
    const dataDir = tempDir();
    const port = await freePort();
    const pgdb = await start({ dataDir, port });
    await query(pgdb.url(), 'CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)');
    const events: SuperviseEvent['kind'][] = [];
    pgdb.supervise({ intervalMs: 200, onEvent: (e) => events.push(e.kind) });
    const before = postmasterPid(dataDir);
    process.kill(before, 'SIGKILL');
    await until('the postmaster to come back', async () => {
      if (!pgdb.isRunning()) return false;
      return query(pgdb.url(), 'SELECT 1').then(
        () => true,
        () => false,
      );
    });
    expect(postmasterPid(dataDir)).not.toBe(before);
    expect(pgdb.port).toBe(port);
    expect(pgdb.mode).toBe('started');
    expect(events).toEqual(['down', 'up']);
    expect(await query(pgdb.url(), 'SELECT v FROM kept')).toEqual([{ v: 7 }]);
  });

  it("an attached process waits for the owner's supervisor to bring the postmaster back, then attaches again", async () => {
    const dataDir = tempDir();
    const owner = runScript([dataDir, String(await freePort()), 'supervise']);
    const [, , , ownerPort] = (await firstLine(owner)).split(' ');
    const attached = await start({ dataDir, port: await freePort() });
    expect(attached.mode).toBe('attached');
    const events: string[] = [];
    attached.supervise({
      intervalMs: 200,
      onEvent: (e) => events.push(`${e.kind}${e.mode ? `:${e.mode}` : ''}`),
    });
    const before = postmasterPid(dataDir);
    process.kill(before, 'SIGKILL');
    await until('the attached process to see it back', () => events.includes('up:attached'));
    expect(attached.port).toBe(Number(ownerPort));
    const after = postmasterPid(dataDir);
    expect(after).not.toBe(before);
    // The owner (the fixture) restarted it: its parent is the owner, not us.
    expect(fs.readFileSync(`/proc/${after}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]).toBe(
      String(owner.pid),
    );
  });

  it.runIf(isRoot)(
    `as root, runs as the OS user "${DEFAULT_OS_USER}" with none of our environment`,
    async () => {
      process.env.CODERUNNER_SECRET_FOR_TEST = 'must-not-leak';
      cleanups.push(() => {
        delete process.env.CODERUNNER_SECRET_FOR_TEST;
      });
      const dataDir = tempDir();
      const pgdb = await start({ dataDir, port: await freePort() });
      const pid = postmasterPid(dataDir);
      const uid = Number(execFileSync('id', ['-u', DEFAULT_OS_USER], { encoding: 'utf8' }));
      expect(fs.statSync(`/proc/${pid}`).uid).toBe(uid);
      expect(fs.statSync(path.join(dataDir, 'pg')).uid).toBe(uid);
      const environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
      expect(environ.some((v) => v.startsWith('CODERUNNER_SECRET_FOR_TEST='))).toBe(false);
      expect(environ.map((v) => v.split('=')[0]).sort()).toEqual(['LANG', 'LC_ALL', 'PATH']);
      expect(await query(pgdb.url(), 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
    },
  );

  it.runIf(isRoot)(
    'takes over a cluster initialised by another OS user (an older release ran as postgres)',
    async () => {
      const dataDir = tempDir();
      const port = await freePort();
      const pgdb = await startEmbeddedPostgres({ dataDir, port, env });
      await pgdb.stop();
      const nobody = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }));
      execFileSync('chown', ['-R', `${nobody}`, path.join(dataDir, 'pg')]);
      const again = await start({ dataDir, port });
      expect(await query(again.url(), 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
      expect(fs.statSync(path.join(dataDir, 'pg/PG_VERSION')).uid).not.toBe(nobody);
    },
  );

  it.runIf(isRoot)('runs for an ordinary (non-root) user too', async () => {
    const dataDir = tempDir();
    const nobody = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }));
    const nogroup = Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }));
    fs.chownSync(dataDir, nobody, nogroup);
    const child = runScript([dataDir, String(await freePort()), 'once'], { uid: nobody, gid: nogroup });
    const line = await firstLine(child);
    expect(line).toMatch(new RegExp(`^ready postgres ${nobody} \\d+ started \\d+$`));
    expect(fs.statSync(path.join(dataDir, 'pg')).uid).toBe(nobody);
  });
});
