import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedPostgresError, startEmbeddedPostgres } from '../src/embedded';
import { freePort } from '../src/testing';

const here = path.dirname(fileURLToPath(import.meta.url));
const script = path.join(here, 'fixtures/start-embedded.ts');
const isRoot = process.getuid?.() === 0;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-embedded-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function runScript(args: string[], opts: { uid?: number; gid?: number } = {}): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: here,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...opts,
    env: { ...process.env, HOME: os.tmpdir() },
  });
  cleanups.push(() => {
    child.kill('SIGKILL');
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
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

describe('embedded PostgreSQL', () => {
  it('initialises, serves real SQL on 127.0.0.1 with a password, restarts warm and keeps data', async () => {
    const dataDir = tempDir();
    const port = await freePort();
    let pgdb = await startEmbeddedPostgres({ dataDir, port });
    await query(pgdb.url(), 'CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)');
    expect(fs.statSync(path.join(dataDir, 'pg-superuser-password')).mode & 0o777).toBe(0o600);
    const wrongPassword = pgdb.url().replace(/:\/\/postgres:[^@]+@/, '://postgres:wrong@');
    await expect(query(wrongPassword, 'SELECT 1')).rejects.toThrow(/password authentication failed/);
    await pgdb.stop();
    pgdb = await startEmbeddedPostgres({ dataDir, port });
    expect(await query(pgdb.url(), 'SELECT v FROM kept')).toEqual([{ v: 42 }]);
    await pgdb.stop();
  });

  it('says the port is busy instead of rejecting with undefined', async () => {
    const port = await freePort();
    const blocker = net.createServer().listen(port, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    cleanups.push(() => new Promise<void>((r) => blocker.close(() => r())));
    const err = await startEmbeddedPostgres({ dataDir: tempDir(), port }).catch((e) => e);
    expect(err).toBeInstanceOf(EmbeddedPostgresError);
    expect(err.message).toMatch(new RegExp(`port ${port} .*already in use`));
  });

  it('says why it cannot use a data folder it cannot write', async () => {
    const file = path.join(tempDir(), 'a-file');
    fs.writeFileSync(file, '');
    const err = await startEmbeddedPostgres({
      dataDir: path.join(file, 'data'),
      port: await freePort(),
    }).catch((e) => e);
    expect(err).toBeInstanceOf(EmbeddedPostgresError);
    expect(err.message).toMatch(/cannot write the data folder .*CODERUNNER_DATA_DIR/);
  });

  it('starts after a run that was SIGKILLed left its postmaster and pid file behind', async () => {
    const dataDir = tempDir();
    const port = await freePort();
    const first = runScript([dataDir, String(port)]);
    expect(await firstLine(first)).toMatch(/^ready postgres/);
    const orphanPid = Number(fs.readFileSync(path.join(dataDir, 'pg/postmaster.pid'), 'utf8').split('\n')[0]);
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    expect(() => process.kill(orphanPid, 0)).not.toThrow(); // the orphan still holds the folder

    const pgdb = await startEmbeddedPostgres({ dataDir, port });
    cleanups.push(() => pgdb.stop());
    expect(await query(pgdb.url(), 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
    expect(() => process.kill(orphanPid, 0)).toThrow();
  });

  it('starts when a stale pid file names a process that is gone', async () => {
    const dataDir = tempDir();
    const port = await freePort();
    const pgdb = await startEmbeddedPostgres({ dataDir, port });
    await pgdb.stop();
    const pidFile = path.join(dataDir, 'pg/postmaster.pid');
    fs.writeFileSync(pidFile, `999999\n${path.join(dataDir, 'pg')}\n0\n${port}\n\n127.0.0.1\n`);
    const again = await startEmbeddedPostgres({ dataDir, port });
    cleanups.push(() => again.stop());
    expect(await query(again.url(), 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
  });

  it.runIf(isRoot)('runs for an ordinary (non-root) user too', async () => {
    const dataDir = tempDir();
    const nobody = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }));
    const nogroup = Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }));
    fs.chownSync(dataDir, nobody, nogroup);
    const child = runScript([dataDir, String(await freePort()), 'once'], { uid: nobody, gid: nogroup });
    const line = await firstLine(child);
    expect(line).toBe(`ready postgres ${nobody}`);
    expect(fs.statSync(path.join(dataDir, 'pg')).uid).toBe(nobody);
  });
});
