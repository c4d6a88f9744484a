/**
 * The data folder's sources/ (where uploads are stored) full, then read-only, under a running server.
 * Root ignores file modes, so the faults are real: a 1 MiB tmpfs mounted on <dataDir>/sources after
 * the server started, filled, then remounted read-only, then unmounted.
 *
 * Asserts: deployments.create answers a tRPC error quickly, with nothing internal in it (no path, no
 * errno text, no stack), leaves no deployment row and no file behind; the API keeps serving reads
 * (projects.list, deployments.list/get, /readyz); once the folder is writable again, deploying works
 * without a restart. A full logs/ (another tmpfs) does not fail a deployment. Skipped, with the reason, when not root or when mount fails (CI runs as root).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type CodeRunnerClient, createClient } from '@coderunner/api/client';
import { packFolder } from '@coderunner/api/pack';
import { createTestDatabase, freePort, type TestDatabase } from '@coderunner/db/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appFolder,
  curl,
  deployFolder,
  processesOfSandbox,
  uploadForm,
  waitForStatus,
} from '../fixtures/deploy-helpers';
import { cleanupStack, type ServerProcess, sleep, startServerProcess } from './fixtures/server-process';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

const cleanup = cleanupStack();
let db: TestDatabase;
let dataDir: string;
let server: ServerProcess;
let client: CodeRunnerClient;
let token: string;
let projectId: string;
const sandboxIds = new Set<string>();

/** A manifest app (no install step): quick to reach RUNNING. `padding` adds incompressible bytes. */
function app(body: string, paddingBytes = 0): string {
  const files: Record<string, string> = {
    'coderunner.json': JSON.stringify({ start: 'node server.js' }),
    'server.js': `require('http').createServer((q, s) => s.end(${JSON.stringify(body)})).listen(process.env.PORT, '127.0.0.1');`,
  };
  if (paddingBytes) files['padding.txt'] = randomBytes(paddingBytes).toString('base64');
  const dir = appFolder(files);
  cleanup.add('remove app folder', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Raw {
  status: number;
  ms: number;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: raw wire JSON
  error?: any;
}

/** deployments.create as the CLI sends it (multipart), keeping the raw answer to inspect. */
async function rawCreate(dir: string, token: string): Promise<Raw> {
  const form = await uploadForm(projectId, (await packFolder(dir)).archive);
  const started = performance.now();
  const res = await fetch(`${server.trpc}/deployments.create`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    body: form,
    signal: AbortSignal.timeout(20_000),
  });
  const text = await res.text();
  const ms = performance.now() - started;
  let error: unknown;
  try {
    error = JSON.parse(text).error?.json;
  } catch {
    // not JSON: the assertions below say so
  }
  return { status: res.status, ms, text, error };
}

/** Files in sources/ other than our filler. */
const storedFiles = (dir: string) => fs.readdirSync(dir).filter((f) => f !== 'filler' && f !== 'lost+found');

beforeAll(async () => {
  if (!isRoot) return;
  db = await createTestDatabase('cr_disk');
  cleanup.add('drop database', () => db.drop());
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-disk-'));
  fs.chmodSync(dataDir, 0o711);
  cleanup.add('remove data dir', () => fs.rmSync(dataDir, { recursive: true, force: true }));
  cleanup.add('kill sandbox processes', () => {
    const dir = path.join(dataDir, 'sandboxes');
    for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : [])
      sandboxIds.add(name.replace(/^\.creating-/, '').replace(/-\d+$/, ''));
    for (const id of sandboxIds) for (const pid of processesOfSandbox(id)) process.kill(pid, 'SIGKILL');
  });
  server = await startServerProcess({
    port: await freePort(),
    env: {
      DATABASE_URL: db.url,
      CODERUNNER_DATA_DIR: dataDir,
      CODERUNNER_AUTH_SECRET: 'data-dir-faults-secret-data-dir-faults-secret',
      CODERUNNER_START_TIMEOUT_S: '10',
    },
  });
  cleanup.add('stop server', () => server.stop());
  const anon = createClient({ url: server.trpc });
  const registered = await anon.auth.register.mutate({ email: 'disk@example.com', password: 'disk faults' });
  token = registered.token;
  const user = registered.user;
  const sql = new pg.Client({ connectionString: db.url });
  sql.on('error', () => {});
  await sql.connect();
  await sql.query(`UPDATE users SET plan_type = 'team' WHERE id = $1`, [user.id]);
  await sql.end();
  client = createClient({ url: server.trpc, token });
  projectId = (await client.projects.create.mutate({ name: 'disk' })).id;
}, 120_000);

afterAll(() => cleanup.run(), 60_000);

describe.skipIf(!isRoot)('data folder faults (root only: needs mount)', () => {
  it('sources/ full, then read-only: create fails cleanly and reads keep working; writable again: deploys work', async (ctx) => {
    /** What each fault made deployments.create answer. */
    const answers: { full?: Raw; fullTiny?: Raw; readOnly?: Raw; leftInSources?: string[] } = {};
    // A deployment from before the fault: reads must keep showing it, and its app keeps serving.
    const before = await deployFolder(client, projectId, app('before the fault'));
    const running = await waitForStatus(client, before.id, ['RUNNING', 'FAILED'], 60_000);
    expect(running.status).toBe('RUNNING');
    const [{ sandbox } = { sandbox: '' }] = await sandboxOf(before.id);
    if (sandbox) sandboxIds.add(sandbox);

    const sources = path.join(dataDir, 'sources');
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', sources], { stdio: 'pipe' });
    } catch (err) {
      ctx.skip(
        `cannot mount a tmpfs on ${sources}: ${(err as { stderr?: Buffer }).stderr?.toString().trim()}`,
      );
    }
    const mounted = () => fs.readFileSync('/proc/mounts', 'utf8').includes(` ${sources} `);
    cleanup.add('unmount sources', () => {
      if (!mounted()) return;
      try {
        execFileSync('umount', [sources], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['-l', sources], { stdio: 'pipe' });
      }
    });

    const checkReads = async (when: string) => {
      const projects = await client.projects.list.query();
      expect(
        projects.items.map((p) => p.id),
        when,
      ).toEqual([projectId]);
      const deployments = await client.deployments.list.query({ projectId });
      expect(
        deployments.items.map((d) => d.id),
        `${when}: no deployment row from the failed upload`,
      ).toEqual(expect.arrayContaining([before.id]));
      expect((await client.deployments.get.query({ id: before.id })).status, when).toBe('RUNNING');
      expect((await curl(running.publicUrl!)).body, when).toBe('before the fault');
      expect((await fetch(`${server.url}/readyz`)).status, when).toBe(200);
      return deployments.items.length;
    };
    const countBefore = await checkReads('before the fault');
    const expectCleanFailure = async (r: Raw, what: string) => {
      expect(r.status, `${what}: ${r.text}`).toBeGreaterThanOrEqual(400);
      expect(r.error?.data?.code, `${what}: a tRPC error with a code: ${r.text}`).toBeTypeOf('string');
      expect(r.ms, `${what}: answered quickly`).toBeLessThan(5_000);
      // Nothing internal: no path, no errno text, no stack.
      expect(r.text, what).not.toContain(dataDir);
      expect(r.text, what).not.toMatch(/ENOSPC:|EROFS:|no space left on device|\.ts:\d+|\bat [\w.]+ \(/);
      // …but the operator finds the cause in the log, under the request id the client was given.
      const requestId = r.error?.data?.requestId as string | undefined;
      if (requestId) {
        let logged: string | undefined;
        for (let i = 0; i < 40 && !logged; i++) {
          logged = server.errorLines().find((l) => l.includes(requestId));
          if (!logged) await sleep(50); // the log line travels through a pipe
        }
        expect(logged, `${what}: the cause is logged under ${requestId}`).toMatch(/ENOSPC|EROFS/);
      }
    };

    // 1. Full, but for a few KiB: the options file of an upload still fits, its archive does not.
    const { bavail, bsize } = fs.statfsSync(sources);
    fs.writeFileSync(path.join(sources, 'filler'), Buffer.alloc(Math.max(0, bavail * bsize - 48 * 1024)));
    answers.full = await rawCreate(app('too big', 200 * 1024), token);
    await expectCleanFailure(answers.full, 'almost full, 200 KiB upload');
    // What the failed upload left in sources/ (asserted empty below); removed so the next steps start clean.
    answers.leftInSources = storedFiles(sources);
    for (const f of answers.leftInSources) fs.rmSync(path.join(sources, f), { force: true });
    expect(await checkReads('sources/ full')).toBe(countBefore);

    // 2. Completely full: even a tiny upload is refused the same way.
    try {
      fs.appendFileSync(path.join(sources, 'filler'), Buffer.alloc(1024 * 1024));
    } catch {
      // ENOSPC: the point
    }
    answers.fullTiny = await rawCreate(app('tiny'), token);
    await expectCleanFailure(answers.fullTiny, 'full, tiny upload');
    expect(storedFiles(sources), 'nothing of the failed tiny upload is left').toEqual([]);
    expect(await checkReads('sources/ full')).toBe(countBefore);

    // 3. Read-only (space is free again, writing is not allowed).
    for (const f of fs.readdirSync(sources)) fs.rmSync(path.join(sources, f), { force: true });
    execFileSync('mount', ['-o', 'remount,ro', sources], { stdio: 'pipe' });
    answers.readOnly = await rawCreate(app('tiny'), token);
    await expectCleanFailure(answers.readOnly, 'read-only');
    // A full or read-only data folder answers 503 with the reason (the error formatter would hide an
    // INTERNAL_SERVER_ERROR's message); the cause is logged (packages/api/src/deployments/service.ts).
    for (const [r, why] of [
      [answers.full!, /disk is full/],
      [answers.fullTiny!, /disk is full/],
      [answers.readOnly!, /read-only/],
    ] as const) {
      expect({ status: r.status, code: r.error?.data?.code }).toEqual({
        status: 503,
        code: 'SERVICE_UNAVAILABLE',
      });
      expect(r.error?.message).toMatch(why);
    }
    // SourceStore.save removes what it already wrote when the archive does not fit, so a failed
    // upload leaves nothing in sources/ (nothing else would sweep that folder).
    expect(answers.leftInSources).toEqual([]);
    expect(storedFiles(sources)).toEqual([]);
    expect(await checkReads('sources/ read-only')).toBe(countBefore);

    console.log(
      `[data-dir-faults] deployments.create answers: ${JSON.stringify(
        Object.fromEntries(
          (['full', 'fullTiny', 'readOnly'] as const).map((k) => {
            const r = answers[k]!;
            return [
              k,
              {
                status: r.status,
                code: r.error?.data?.code,
                message: r.error?.message,
                ms: Math.round(r.ms),
              },
            ];
          }),
        ),
      )}; files left in sources/ by the failed 200 KiB upload: ${JSON.stringify(answers.leftInSources)}`,
    );

    // 4. Writable again (unmounted): deploying works, without a restart.
    execFileSync('umount', [sources], { stdio: 'pipe' });
    const after = await deployFolder(client, projectId, app('after the fault'));
    const ok = await waitForStatus(client, after.id, ['RUNNING', 'FAILED'], 60_000);
    expect(ok.status).toBe('RUNNING');
    expect((await curl(ok.publicUrl!)).body).toBe('after the fault');

    // 5. logs/ full: a deployment does not fail for want of a log line (the log store drops them).
    const logs = path.join(dataDir, 'logs');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', logs], { stdio: 'pipe' });
    const logsMounted = () => fs.readFileSync('/proc/mounts', 'utf8').includes(` ${logs} `);
    cleanup.add('unmount logs', () => {
      if (logsMounted()) execFileSync('umount', ['-l', logs], { stdio: 'pipe' });
    });
    try {
      fs.appendFileSync(path.join(logs, 'filler'), Buffer.alloc(1024 * 1024));
    } catch {
      // ENOSPC: the point
    }
    const quiet = await deployFolder(client, projectId, app('logs full'));
    const quietRunning = await waitForStatus(client, quiet.id, ['RUNNING', 'FAILED'], 60_000);
    expect(quietRunning.status).toBe('RUNNING');
    expect((await curl(quietRunning.publicUrl!)).body).toBe('logs full');
    expect((await client.deployments.list.query({ projectId })).items.length).toBe(countBefore + 2);
    execFileSync('umount', [logs], { stdio: 'pipe' });

    for (const id of [before.id, after.id, quiet.id]) {
      for (const row of await sandboxOf(id)) if (row.sandbox) sandboxIds.add(row.sandbox);
      expect((await client.deployments.destroy.mutate({ id })).status).toBe('DESTROYED');
    }
    expect(server.exited()).toBe(false);
  }, 180_000);
});

async function sandboxOf(id: string): Promise<{ sandbox: string | null }[]> {
  const sql = new pg.Client({ connectionString: db.url });
  sql.on('error', () => {});
  await sql.connect();
  try {
    return (await sql.query('SELECT app_sandbox_id AS sandbox FROM deployments WHERE id = $1', [id])).rows;
  } finally {
    await sql.end();
  }
}
