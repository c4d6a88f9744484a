/**
 * The server on its embedded PostgreSQL (no DATABASE_URL), as `pnpm start` runs it, with the
 * operator's commands run beside it on the same data folder: they attach to its cluster and never
 * stop it. A postmaster killed under the server comes back on its own; one left behind by a server
 * killed with SIGKILL is adopted by the next.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createClient } from '@coderunner/api/client';
import { freePort } from '@coderunner/db/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ServerProcess, startServerProcess } from './load/fixtures/server-process';

// Every server and command of this file uses the embedded default, in a temp data folder of its own.
delete process.env.DATABASE_URL;

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const serverSrc = path.resolve(here, '../src');
const migrateCli = path.resolve(here, '../../../packages/db/src/cli/migrate.ts');

const cleanups: (() => unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Setup {
  dataDir: string;
  env: Record<string, string>;
}

async function setup(): Promise<Setup> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-embedded-server-'));
  cleanups.push(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  return {
    dataDir,
    env: {
      CODERUNNER_DATA_DIR: dataDir,
      CODERUNNER_EMBEDDED_PG_PORT: String(await freePort()),
      CODERUNNER_APPS_EMBEDDED_PG_PORT: String(await freePort()),
    },
  };
}

async function startServer(s: Setup, port?: number): Promise<ServerProcess> {
  const server = await startServerProcess({ port: port ?? (await freePort()), env: s.env });
  cleanups.push(() => server.stop());
  return server;
}

function postmasterPid(s: Setup): number {
  return Number(fs.readFileSync(path.join(s.dataDir, 'pg/postmaster.pid'), 'utf8').split('\n')[0]);
}

/**
 * Whether the process runs. A zombie does not: an adopted postmaster is not the server's child, so
 * once it has exited it waits for init to reap it, which may take a moment (the server, like
 * processAlive in @coderunner/embedded-postgres, counts it as gone).
 */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] !== 'Z';
  } catch {
    return false;
  }
}

async function readyz(server: ServerProcess): Promise<number> {
  try {
    return (await fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(5_000) })).status;
  } catch {
    return 0;
  }
}

/** Ready, and an authenticated API call goes through to the database. */
async function expectServing(server: ServerProcess, token: string): Promise<void> {
  expect(await readyz(server)).toBe(200);
  const me = await createClient({ url: server.trpc, token }).auth.me.query();
  expect(me.email).toBe(EMAIL);
}

const EMAIL = 'ops@example.com';

/** `node --import tsx <script> …args` with the setup's environment; resolves with code and output. */
async function command(s: Setup, script: string, args: string[] = []) {
  return run(process.execPath, ['--import', 'tsx', script, ...args], {
    env: { ...process.env, ...s.env },
    timeout: 120_000,
  }).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e) => ({ code: e.code as number, out: e.stdout as string, err: e.stderr as string }),
  );
}

describe('the server on its embedded PostgreSQL, with commands beside it', () => {
  let s: Setup;
  let server: ServerProcess;
  let token: string;
  let pid: number;

  beforeAll(async () => {
    s = await setup();
    server = await startServer(s);
    ({ token } = await createClient({ url: server.trpc }).auth.register.mutate({
      email: EMAIL,
      password: 'a long passphrase',
    }));
    pid = postmasterPid(s);
    await expectServing(server, token);
  });

  it('admin set-plan attaches to the running cluster and leaves the server serving', async () => {
    const r = await command(s, path.join(serverSrc, 'cli/admin.ts'), ['set-plan', EMAIL, 'team']);
    expect(r).toMatchObject({ code: 0, out: `${EMAIL} is now on the team plan\n` });
    expect(alive(pid)).toBe(true);
    await expectServing(server, token);
    expect((await createClient({ url: server.trpc, token }).auth.me.query()).planType).toBe('team');
  });

  it('migrate:status attaches too (even when asked for another port: the folder has the cluster)', async () => {
    const r = await command(
      { ...s, env: { ...s.env, CODERUNNER_EMBEDDED_PG_PORT: String(await freePort()) } },
      migrateCli,
      ['status'],
    );
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^applied {2}0001_initial_schema/m);
    expect(alive(pid)).toBe(true);
    await expectServing(server, token);
  });

  it('rotate-keys leaves the server serving', async () => {
    const r = await command(s, path.join(serverSrc, 'cli/rotate-keys.ts'));
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^done: 0 rotated/);
    expect(alive(pid)).toBe(true);
    await expectServing(server, token);
  });

  it('the worker command runs and stops beside the server without stopping its database', async () => {
    const worker: ChildProcess = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(serverSrc, 'worker.ts')],
      {
        env: { ...process.env, ...s.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    cleanups.push(() => worker.kill('SIGKILL'));
    let out = '';
    worker.stdout!.on('data', (d) => {
      out += d;
    });
    worker.stderr!.on('data', (d) => {
      out += d;
    });
    const exited = new Promise<number | null>((r) => worker.once('exit', (code) => r(code)));
    const deadline = Date.now() + 60_000;
    while (!out.includes('worker started') && Date.now() < deadline && worker.exitCode === null) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(out).toContain('embedded PostgreSQL attached');
    expect(out).toContain('worker started');
    await expectServing(server, token);
    worker.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(alive(pid)).toBe(true);
    await expectServing(server, token);
  });

  it('a second server on the same data folder attaches and serves; stopping it leaves the first serving', async () => {
    const second = await startServer(s);
    expect(second.output()).toContain('embedded PostgreSQL attached');
    await expectServing(second, token);
    await second.stop();
    expect((await second.waitExit()).code).toBe(0);
    expect(alive(pid)).toBe(true);
    await expectServing(server, token);
  });

  it("a second server asked for the first's HTTP port refuses to start and leaves the first serving", async () => {
    const err = await startServerProcess({ port: server.port, env: s.env }).catch((e: Error) => e);
    expect(String(err)).toMatch(/already in use; set PORT to a free port/);
    expect(alive(pid)).toBe(true);
    await expectServing(server, token);
  });

  it('kill -9 of the postmaster: /readyz answers 503, then 200 again on its own', async () => {
    const before = postmasterPid(s);
    const killedAt = Date.now();
    process.kill(before, 'SIGKILL');
    const statuses: number[] = [];
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline) {
      const status = await readyz(server);
      statuses.push(status);
      if (statuses.includes(503) && status === 200) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    console.log(
      `[embedded] kill -9 of the postmaster: /readyz 503 ${statuses.filter((x) => x === 503).length} times, ` +
        `200 again ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill`,
    );
    expect(statuses).toContain(503);
    expect(statuses.at(-1)).toBe(200);
    expect(postmasterPid(s)).not.toBe(before);
    await expectServing(server, token);
    expect(server.exited()).toBe(false);
    // The supervisor said what happened (its line may follow the first 200 by a moment).
    const logged = Date.now() + 10_000;
    while (!server.output().includes('embedded PostgreSQL is back') && Date.now() < logged) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const lines = server
      .output()
      .split('\n')
      .filter((l) => l.includes('embedded PostgreSQL'));
    expect(lines.join('\n')).toMatch(/is down: starting it again[\s\S]*is back \(started\)/);
    pid = postmasterPid(s);
  });
});

describe('a postmaster left behind by a server killed with SIGKILL', () => {
  it('is adopted by the next server on the folder, which stops it when it stops', async () => {
    const s = await setup();
    const first = await startServer(s);
    const orphan = postmasterPid(s);
    await first.kill();
    expect(alive(orphan)).toBe(true);

    const next = await startServer(s);
    expect(next.output()).toContain('embedded PostgreSQL adopted');
    expect(postmasterPid(s)).toBe(orphan);
    expect(await readyz(next)).toBe(200);
    const { token } = await createClient({ url: next.trpc }).auth.register.mutate({
      email: EMAIL,
      password: 'a long passphrase',
    });
    await expectServing(next, token);
    await next.stop();
    expect((await next.waitExit()).code).toBe(0);
    expect(alive(orphan)).toBe(false);
  });
});
