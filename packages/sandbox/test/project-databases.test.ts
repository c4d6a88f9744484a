/**
 * One PostgreSQL per project, real clusters: each in its own uid, bubblewrap and cgroup. Tenants
 * cannot list, snoop or starve each other; a killed postmaster comes back; a new server adopts the
 * clusters the last one left running; the disk cap turns a database read-only and back.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createProjectClusters,
  type DatabaseInfo,
  detectIsolation,
  type ProjectClusterState,
  type ProjectClusters,
  type ResourceLimits,
  stopProjectClusters,
} from '../src';

const tools = detectIsolation('auto').tools;
const FREE: ResourceLimits = { memoryMb: 256, pids: 128, cpus: 0.5, diskMb: 1024, tmpMb: 64 };
const SMALL_DISK: ResourceLimits = { ...FREE, cpus: 1, diskMb: 150 };
const PROJECT_A = 'aaaaaaaa-0000-4000-8000-000000000001';
const PROJECT_B = 'bbbbbbbb-0000-4000-8000-000000000002';
const PROJECT_C = 'cccccccc-0000-4000-8000-000000000003';

let dataDir: string;
let clusters: ProjectClusters;
const states: ProjectClusterState[] = [];
const opened: ProjectClusters[] = [];
let a: DatabaseInfo;
let b: DatabaseInfo;

function open(): ProjectClusters {
  const c = createProjectClusters({
    dataDir,
    tools,
    limits: (projectId) => (projectId === PROJECT_C ? SMALL_DISK : FREE),
    diskCheckMs: 300,
    onState: (s) => states.push(s),
  });
  opened.push(c);
  return c;
}

async function query<T extends pg.QueryResultRow>(
  url: string,
  sql: string,
  timeoutMs = 20_000,
): Promise<T[]> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
  });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Polls until `url` answers a query; returns how long it took. */
async function answersWithin(url: string, deadlineMs: number): Promise<number> {
  const since = Date.now();
  let last: unknown;
  while (Date.now() - since < deadlineMs) {
    try {
      await query(url, 'SELECT 1', 2000);
      return Date.now() - since;
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`no answer within ${deadlineMs} ms: ${(last as Error)?.message}`);
}

function postmasterPid(info: DatabaseInfo): number {
  const file = path.join(dataDir, 'databases', info.sandboxId, 'pg', 'postmaster.pid');
  return Number(fs.readFileSync(file, 'utf8').split('\n')[0]);
}

function memoryGroup(sandboxId: string): string {
  const cgroups = tools!.cgroups;
  if (cgroups.version === 2) return path.join(path.dirname(cgroups.base), 'coderunner-db', sandboxId);
  return path.join(path.dirname(cgroups.memory), 'coderunner-db', sandboxId);
}

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-project-db-'));
  fs.chmodSync(dataDir, 0o711);
  clusters = open();
  a = await clusters.provision(PROJECT_A);
  b = await clusters.provision(PROJECT_B);
}, 300_000);

afterAll(async () => {
  for (const c of opened) await c.close({ stopClusters: true }).catch(() => {});
  await stopProjectClusters(dataDir);
  fs.rmSync(dataDir, { recursive: true, force: true });
}, 120_000);

describe.skipIf(!tools)("a project's own PostgreSQL", () => {
  it('each tenant lists only its own database and role, as a non-superuser, in a uid and cgroup of its own', async () => {
    expect(a.connectionInfo.port).not.toBe(b.connectionInfo.port);
    for (const info of [a, b]) {
      const dbs = await query<{ datname: string }>(
        info.connectionInfo.url,
        'SELECT datname FROM pg_database ORDER BY 1',
      );
      expect(dbs.map((r) => r.datname)).toEqual(['app', 'postgres', 'template0', 'template1']);
      const roles = await query<{ rolname: string }>(
        info.connectionInfo.url,
        "SELECT rolname FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%' ORDER BY 1",
      );
      expect(roles.map((r) => r.rolname)).toEqual(['app', 'postgres']);
      const [me] = await query<{ super: boolean }>(
        info.connectionInfo.url,
        'SELECT rolsuper AS super FROM pg_roles WHERE rolname = current_user',
      );
      expect(me!.super).toBe(false);
      // Not even the server's other databases of this cluster.
      const other = new URL(info.connectionInfo.url);
      other.pathname = '/postgres';
      await expect(query(other.toString(), 'SELECT 1')).rejects.toThrow(/permission denied|not permitted/);
    }
    // A's password does not open B's cluster.
    const wrong = new URL(b.connectionInfo.url);
    wrong.password = encodeURIComponent(a.connectionInfo.password);
    await expect(query(wrong.toString(), 'SELECT 1')).rejects.toThrow(/password authentication failed/);

    const uidOf = (pid: number) =>
      Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    const [pa, pb] = [postmasterPid(a), postmasterPid(b)];
    expect(uidOf(pa)).toBeGreaterThanOrEqual(1000);
    expect(uidOf(pa)).not.toBe(uidOf(pb));
    expect(fs.readFileSync(`/proc/${pa}/cgroup`, 'utf8')).toContain(`/coderunner-db/${a.sandboxId}/postgres`);
    const memory = memoryGroup(a.sandboxId);
    const limit = fs.existsSync(path.join(memory, 'memory.max'))
      ? fs.readFileSync(path.join(memory, 'memory.max'), 'utf8')
      : fs.readFileSync(path.join(memory, 'memory.limit_in_bytes'), 'utf8');
    expect(Number(limit)).toBe(256 * 1024 * 1024);
    // Its mount namespace: the server's data folder (the other cluster's included) is not there.
    const root = `/proc/${pa}/root`;
    expect(fs.existsSync(path.join(root, dataDir, 'databases', b.sandboxId))).toBe(false);
    expect(fs.existsSync(path.join(root, dataDir, 'databases', a.sandboxId, 'pg', 'PG_VERSION'))).toBe(true);
    // Sessions of one tenant are invisible to the other: separate clusters.
    const session = new pg.Client({ connectionString: a.connectionInfo.url });
    session.on('error', () => {});
    await session.connect();
    try {
      await session.query("SET application_name = 'tenant-a-session'");
      const seen = await query<{ n: number }>(
        b.connectionInfo.url,
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'tenant-a-session'",
      );
      expect(seen[0]!.n).toBe(0);
    } finally {
      await session.end();
    }
  });

  it("250 half-open connections to one tenant's cluster do not stop another's client", async () => {
    const sockets: net.Socket[] = [];
    try {
      await Promise.all(
        Array.from(
          { length: 250 },
          () =>
            new Promise<void>((resolve) => {
              const s = net.connect({ host: '127.0.0.1', port: a.connectionInfo.port });
              s.on('error', () => {});
              s.once('connect', () => resolve());
              s.once('close', () => resolve());
              sockets.push(s);
            }),
        ),
      );
      const rows = await query<{ one: number }>(b.connectionInfo.url, 'SELECT 1 AS one', 20_000);
      expect(rows[0]!.one).toBe(1);
    } finally {
      for (const s of sockets) s.destroy();
    }
  }, 60_000);

  it("a free-plan tenant's 2 GB sort stays inside its memory limit while another tenant's queries answer", async () => {
    const group = memoryGroup(a.sandboxId);
    const v2 = fs.existsSync(path.join(group, 'memory.max'));
    if (!v2) fs.writeFileSync(path.join(group, 'memory.max_usage_in_bytes'), '0');
    const client = new pg.Client({ connectionString: a.connectionInfo.url });
    client.on('error', () => {});
    await client.connect();
    // work_mem may be raised by the tenant: the cgroup is what holds. 20M rows of ~100 bytes: 2 GB.
    await client.query("SET work_mem = '2GB'");
    await client.query("SET statement_timeout = '180s'");
    const sort = client
      .query(
        'SELECT count(*) FROM (SELECT g, md5(g::text) || md5((g + 1)::text) AS t FROM generate_series(1, 20000000) g ORDER BY t) s',
      )
      .then(
        () => 'finished',
        (err: Error) => err.message,
      );
    let answered = 0;
    const slowest: number[] = [];
    let done = false;
    void sort.then(() => {
      done = true;
    });
    while (!done) {
      const t = Date.now();
      await query(b.connectionInfo.url, 'SELECT count(*) FROM pg_class', 20_000);
      slowest.push(Date.now() - t);
      answered++;
      await new Promise((r) => setTimeout(r, 200));
    }
    const outcome = await sort;
    await client.end().catch(() => {});
    const peak = Number(
      fs.readFileSync(path.join(group, v2 ? 'memory.peak' : 'memory.max_usage_in_bytes'), 'utf8'),
    );
    console.log(
      `big sort: ${outcome}; peak ${Math.round(peak / 1024 / 1024)} MB of 256; other tenant answered ${answered} queries, slowest ${Math.max(...slowest)} ms`,
    );
    expect(peak).toBeLessThanOrEqual(256 * 1024 * 1024);
    expect(answered).toBeGreaterThan(0);
    // The tenant's cluster serves again (a backend killed for memory means a crash recovery).
    await answersWithin(a.connectionInfo.url, 60_000);
  }, 300_000);

  it('kill -9 of a postmaster: queries answer again within seconds', async () => {
    process.kill(postmasterPid(a), 'SIGKILL');
    const took = await answersWithin(a.connectionInfo.url, 30_000);
    console.log(`answering ${took} ms after kill -9 of the postmaster`);
    expect(states.some((s) => s.sandboxId === a.sandboxId && s.state === 'down')).toBe(true);
  }, 60_000);

  it('a new server adopts the clusters the last one left running, and supervises them', async () => {
    await query(a.connectionInfo.url, 'CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)');
    const before = postmasterPid(a);
    await clusters.close(); // the postmasters run on
    expect(await answersWithin(a.connectionInfo.url, 5000)).toBeLessThan(5000);
    states.length = 0;
    clusters = open();
    await clusters.startAll([a.sandboxId, b.sandboxId]);
    expect(postmasterPid(a)).toBe(before);
    expect(states.filter((s) => s.state === 'up').map((s) => s.mode)).toEqual(['adopted', 'adopted']);
    process.kill(before, 'SIGKILL');
    await answersWithin(a.connectionInfo.url, 30_000);
    expect(await query(a.connectionInfo.url, 'SELECT x FROM kept')).toEqual([{ x: 42 }]);
    const handle = await clusters.clusterOf(a.sandboxId);
    expect(handle.dataDir).toBe(path.join(dataDir, 'databases', a.sandboxId, 'pg'));
    expect(
      (
        await query<{ s: boolean }>(
          handle.superuserUrl,
          'SELECT rolsuper AS s FROM pg_roles WHERE rolname = current_user',
        )
      )[0]!.s,
    ).toBe(true);
  }, 120_000);

  it('reset empties the database with the same credentials; destroy removes the cluster', async () => {
    await clusters.reset(a.sandboxId);
    const tables = await query(a.connectionInfo.url, "SELECT 1 FROM pg_tables WHERE tablename = 'kept'");
    expect(tables).toEqual([]);
    const folder = path.join(dataDir, 'databases', b.sandboxId);
    const uid = JSON.parse(fs.readFileSync(path.join(folder, 'cluster.json'), 'utf8')).uid as number;
    await clusters.destroy(b.sandboxId);
    expect(fs.existsSync(folder)).toBe(false);
    expect(fs.existsSync(memoryGroup(b.sandboxId))).toBe(false);
    expect(fs.existsSync(`/var/lib/coderunner/uids/${uid}`)).toBe(false);
    await expect(query(b.connectionInfo.url, 'SELECT 1', 2000)).rejects.toThrow();
    await clusters.destroy(b.sandboxId); // again: nothing left to do
  }, 120_000);

  it('over its disk cap a database accepts no writes, and accepts them again once under it', async () => {
    const c = await clusters.provision(PROJECT_C);
    const url = c.connectionInfo.url;
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => {});
    await client.connect();
    await client.query('CREATE TABLE big (t text)');
    let refused = '';
    for (let i = 0; i < 40 && !refused; i++) {
      try {
        await client.query('INSERT INTO big SELECT repeat(md5(g::text), 30) FROM generate_series(1, 4000) g');
      } catch (err) {
        refused = (err as Error).message;
      }
      if (!refused) await new Promise((r) => setTimeout(r, 400));
    }
    await client.end().catch(() => {});
    const seen = states.filter((s) => s.sandboxId === c.sandboxId).map((s) => `${s.state} ${s.sizeMb ?? ''}`);
    expect(
      seen.some((s) => s.startsWith('read-only ')),
      `${seen.join(', ')}; ${refused}`,
    ).toBe(true);
    // New sessions are read-only; a session may turn that off to make room (drop, truncate).
    await expect(query(url, 'INSERT INTO big VALUES (1)')).rejects.toThrow(/read-only transaction/);
    // Only a state reported after the drop counts: while the inserts ran, the size may have crossed
    // the cap both ways (a checkpoint frees WAL), leaving an earlier 'writable' in the list.
    const before = states.length;
    const room = new pg.Client({ connectionString: url });
    room.on('error', () => {});
    await room.connect();
    await room.query('SET default_transaction_read_only = off');
    await room.query('DROP TABLE big');
    await room.end();
    const since = Date.now();
    while (!states.slice(before).some((s) => s.sandboxId === c.sandboxId && s.state === 'writable')) {
      if (Date.now() - since > 60_000) throw new Error('the database did not accept writes again');
      await new Promise((r) => setTimeout(r, 200));
    }
    await query(url, 'CREATE TABLE small (x int); INSERT INTO small VALUES (1)');
    console.log(
      `disk cap: ${states
        .filter((s) => s.sandboxId === c.sandboxId)
        .map((s) => `${s.state} ${s.sizeMb ?? ''}`)
        .join(', ')}`,
    );
  }, 180_000);
});
