/**
 * One PostgreSQL cluster per project on the local provider: a project's database is a service of
 * its own, in `<dataDir>/databases/<id>/` (the `pg/` data folder, its superuser password, its log,
 * `cluster.json`), listening on a port of 127.0.0.1 chosen at creation and kept (the apps' stored
 * URLs contain it). Tenants can neither list, snoop nor starve each other: each cluster has its own
 * catalog, its own connection slots, its own uid, and its own cgroup with the owner's plan's limits.
 *
 * Isolated (root, bubblewrap, cgroups: as sandboxes are), the postmaster runs
 * - as a uid of its own, claimed from the sandboxes' uid range (uids.ts: the claim names the
 *   cluster's folder, so the uid is never handed to anyone else while the folder exists);
 * - in bubblewrap with the sandboxes' seccomp filter: a mount namespace where only its data folder
 *   is writable, the system and the PostgreSQL binaries read-only, a private /tmp and /dev/shm; the
 *   host's PID and IPC namespaces are kept (the pid file must name a pid we can see, and PostgreSQL's
 *   shared-memory interlock against a second postmaster on one folder needs the host's IPC namespace);
 *   the host's network too (it listens on 127.0.0.1:<port>; a sandbox reaches it only through its
 *   pasta's forward of that one port);
 * - in the cgroup `coderunner-db/<id>` (memory, pids and cpu of the owner's plan), beside the tenants'
 *   `coderunner` group, with the same CPU cap over all databases together (the host's CPUs less the
 *   control plane's reserve) and the same half weight against the control plane.
 *
 * A new cluster is a copy of a template folder (`databases/.template`, initdb'd once) given its own
 * superuser password: creation costs a copy and a start, not an initdb.
 *
 * Disk: a watcher measures the data folder every few seconds. Over the plan's disk cap the database
 * stops accepting writes (`default_transaction_read_only` on the app database, the app's sessions
 * ended); sessions that turn it off again and keep growing the folder are ended at every check; past
 * 1.25 × the cap the app's role may no longer log in; once under the cap all of that is undone.
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  type EmbeddedPostgres,
  type EmbeddedPostgresSettingNames,
  initEmbeddedPostgres,
  startEmbeddedPostgres,
} from '@coderunner/embedded-postgres';
import pg from 'pg';
import {
  type CgroupLayout,
  cgroupsWritable,
  configureTenants,
  detectCgroups,
  type ResourceLimits,
  SandboxCgroup,
  tenantCpuBudget,
} from '../local/cgroups';
import { dropPrivileges, type IsolationTools, SETPRIV_CAPS, systemArgs } from '../local/isolation';
import { SECCOMP_FD } from '../local/seccomp';
import { DEFAULT_UID_CLAIMS_DIR, DEFAULT_UID_RANGE, UidAllocator, type UidRange } from '../local/uids';
import { type DatabaseConnectionInfo, SandboxError } from '../types';
import type { DatabaseInfo } from './provisioner';
import { scramSha256Verifier } from './scram';

const execFileAsync = promisify(execFile);

/** Prefix of the `db_sandbox_id` of a project's own cluster (`localpg-<32 hex>`: 40 characters). */
export const PROJECT_DATABASE_SANDBOX_PREFIX = 'localpg-';
const ID = /^localpg-[0-9a-f]{32}$/;
/** The cgroup (under each controller) holding one group per project database. */
export const DATABASES_CGROUP = 'coderunner-db';
/** The app's role and database in its cluster. */
export const APP_ROLE = 'app';
export const APP_DATABASE = 'app';
/** Connections the postmaster accepts; the app's role gets all but the superuser's reserve and 2 for the server. */
export const MAX_CONNECTIONS = 25;
export const SUPERUSER_RESERVED = 3;
export const APP_CONNECTION_LIMIT = MAX_CONNECTIONS - SUPERUSER_RESERVED - 2;
/** Past cap × this, the app's role may no longer log in (a tenant that turned read-only off and kept writing). */
export const HARD_CAP_FACTOR = 1.25;
const LOG_MAX_BYTES = 16 * 1024 * 1024;

export const isProjectDatabaseSandboxId = (id: string) => ID.test(id);

export interface ProjectClusterState {
  state: 'up' | 'down' | 'failed' | 'stopped' | 'read-only' | 'no-login' | 'writable';
  sandboxId: string;
  projectId: string;
  port: number;
  mode?: string;
  error?: string;
  sizeMb?: number;
  capMb?: number;
}

export interface ProjectClustersOptions {
  /** The server's data folder: clusters live in `<dataDir>/databases/`. */
  dataDir: string;
  /** The limits of the project's owner's plan (memory, pids, CPUs, disk cap). */
  limits: (projectId: string) => ResourceLimits | Promise<ResourceLimits>;
  /** The local provider's isolation tools (detectIsolation().tools); null: plain clusters (no uid, bwrap or cgroup). */
  tools: IsolationTools | null;
  uidRange?: UidRange | undefined;
  uidClaimsDir?: string | undefined;
  /** CPUs all databases may use together (default: the host's less the control plane's reserve). */
  tenantCpus?: number | undefined;
  /** How often the disk watcher measures each cluster (default 5 s). */
  diskCheckMs?: number;
  log?: (msg: string) => void;
  onState?: (state: ProjectClusterState) => void;
}

/** What another module (backups) needs of a project's cluster. */
export interface ProjectClusterHandle {
  sandboxId: string;
  projectId: string;
  /** The PostgreSQL data folder (`<dataDir>/databases/<id>/pg`). */
  dataDir: string;
  superuserUrl: string;
  port: number;
  /** Stops the postmaster (clean shutdown) and its supervision; `start()` brings it back. */
  stop(): Promise<void>;
  start(): Promise<void>;
}

export interface ProjectClusters {
  /** Creates the project's cluster, its app role and database; on failure leaves nothing behind. */
  provision(projectId: string): Promise<DatabaseInfo>;
  /** Makes the template folder ready (initdb once per data folder) so that the first project does not wait for it. */
  prepare(): Promise<void>;
  /** Starts (or adopts) these clusters and supervises them; one that cannot start is logged and skipped. */
  startAll(sandboxIds: string[]): Promise<void>;
  /** Drops the app database and creates it again, empty, same owner and password. */
  reset(sandboxId: string): Promise<void>;
  /** Stops the cluster and removes its folder, uid claim and cgroup (a project's delete). */
  destroy(sandboxId: string): Promise<void>;
  /** The cluster's port (from its record), or undefined when there is no such cluster. */
  portOf(sandboxId: string): number | undefined;
  /** The running cluster, started when needed. */
  clusterOf(sandboxId: string): Promise<ProjectClusterHandle>;
  /** Bytes used by the cluster's data folder. */
  sizeOf(sandboxId: string): Promise<number>;
  /**
   * Ends supervision and closes connections. The postmasters run on by default (apps outlive the
   * server; the next server adopts them); `{ stopClusters: true }` stops them too.
   */
  close(opts?: { stopClusters?: boolean }): Promise<void>;
}

interface ClusterRecord {
  id: string;
  projectId: string;
  port: number;
  uid?: number;
  createdAt: string;
}

interface Open {
  record: ClusterRecord;
  pg: EmbeddedPostgres;
  pool: pg.Pool;
  cgroup: SandboxCgroup | null;
  limits: ResourceLimits;
  watcher: NodeJS.Timeout | null;
  disk: { state: 'ok' | 'read-only' | 'no-login'; lastBytes: number; busy: boolean };
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)
      ? `${err.message} (SQLSTATE ${code})`
      : err.message;
  }
  return String(err);
}

const quoteLiteral = (value: string) => `'${value.replaceAll("'", "''")}'`;

/** PostgreSQL settings sized to the plan (the README's "project database" table). */
export function clusterSettings(limits: ResourceLimits): Record<string, string> {
  const mem = limits.memoryMb;
  const mb = (n: number) => `${Math.max(1, Math.floor(n))}MB`;
  return {
    max_connections: String(MAX_CONNECTIONS),
    superuser_reserved_connections: String(SUPERUSER_RESERVED),
    shared_buffers: mb(Math.max(16, mem / 8)),
    effective_cache_size: mb(mem / 2),
    // Small, so that ordinary sorts spill to (capped) temp files rather than grow past the memory limit.
    work_mem: mem >= 1024 ? '4MB' : '2MB',
    maintenance_work_mem: mb(Math.max(16, mem / 16)),
    // Superuser-only: the tenant cannot raise it. Per session.
    temp_file_limit: mb(Math.max(64, limits.diskMb / 4)),
    statement_timeout: '300s',
    idle_in_transaction_session_timeout: '600s',
    authentication_timeout: '10s',
    max_wal_size: mb(Math.max(64, limits.diskMb / 8)),
    // Bounds the WAL a crash recovery replays (a killed postmaster is back sooner).
    checkpoint_timeout: '60s',
    min_wal_size: '32MB',
    max_worker_processes: '4',
    max_parallel_workers: String(Math.max(0, Math.min(2, Math.floor(limits.cpus)))),
    max_parallel_workers_per_gather: String(limits.cpus >= 2 ? 1 : 0),
    huge_pages: 'off',
    dynamic_shared_memory_type: 'posix',
    // Tenants' statements never reach the server's disk through the log.
    log_min_error_statement: 'panic',
  };
}

/** `--perms 0755 --dir` for each ancestor of `target` that is not (below) one of `mounted`. */
function parents(target: string, mounted: string[]): string[] {
  const args: string[] = [];
  let dir = path.dirname(target);
  const chain: string[] = [];
  while (dir !== '/' && !mounted.some((m) => dir === m || dir.startsWith(`${m}/`))) {
    chain.unshift(dir);
    dir = path.dirname(dir);
  }
  for (const d of chain) args.push('--perms', '0755', '--dir', d);
  return args;
}

/** A port for a new cluster: below the ephemeral range (outgoing connections never take it), free now. */
async function pickPort(): Promise<number> {
  let low = 32768;
  try {
    low = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    // not Linux
  }
  const first = 20000;
  const last = Math.max(first + 1000, Math.min(low, 65535)) - 1;
  for (let i = 0; i < 50; i++) {
    const port = first + randomInt(last - first + 1);
    if (await portFree(port)) return port;
  }
  throw new SandboxError(`no free port for a database between ${first} and ${last} on 127.0.0.1`);
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

/** Blocks used by a folder (as `du`), in bytes; files that vanish meanwhile are skipped. */
export async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  const walk = async (p: string) => {
    let entries: fs.Dirent[];
    try {
      entries = await fs.promises.readdir(p, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const full = path.join(p, e.name);
      try {
        const st = await fs.promises.lstat(full);
        total += st.blocks * 512;
        if (st.isDirectory()) await walk(full);
      } catch {
        // gone
      }
    }
  };
  await walk(dir);
  return total;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The postmaster's pid from a cluster folder's pid file, when it runs. */
function runningPostmaster(folder: string): number | undefined {
  try {
    const lines = fs.readFileSync(path.join(folder, 'pg', 'postmaster.pid'), 'utf8').split('\n');
    const pid = Number(lines[0]);
    if (!Number.isInteger(pid) || pid <= 0 || !processAlive(pid)) return undefined;
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmd.includes(path.join(folder, 'pg')) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** SIGINT (fast shutdown), then SIGKILL after `ms`. */
async function stopPid(pid: number, ms = 20_000): Promise<void> {
  try {
    process.kill(pid, 'SIGINT');
  } catch {
    return;
  }
  const until = Date.now() + ms;
  while (Date.now() < until && processAlive(pid)) await new Promise((r) => setTimeout(r, 50));
  if (processAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/**
 * Stops every project cluster running from `<dataDir>/databases` (tests, and an operator who wants
 * them down while no server runs): clean shutdowns, then what is left in their cgroups.
 */
export async function stopProjectClusters(dataDir: string): Promise<void> {
  const root = path.join(dataDir, 'databases');
  let names: string[] = [];
  try {
    names = fs.readdirSync(root).filter((n) => ID.test(n));
  } catch {
    return;
  }
  const layout = detectCgroups(DATABASES_CGROUP);
  await Promise.all(
    names.map(async (name) => {
      const pid = runningPostmaster(path.join(root, name));
      if (pid) await stopPid(pid);
      if (typeof layout !== 'string' && process.getuid?.() === 0) {
        const cgroup = new SandboxCgroup(layout, name);
        await cgroup.kill();
        cgroup.remove();
      }
    }),
  );
}

export function createProjectClusters(options: ProjectClustersOptions): ProjectClusters {
  const log = options.log ?? (() => {});
  const root = path.join(path.resolve(options.dataDir), 'databases');
  const tools = options.tools;
  const layout: CgroupLayout | null = tools ? cgroupLayout(tools) : null;
  const uids = tools
    ? new UidAllocator(options.uidRange ?? DEFAULT_UID_RANGE, options.uidClaimsDir ?? DEFAULT_UID_CLAIMS_DIR)
    : null;
  const opened = new Map<string, Promise<Open>>();
  let template: Promise<string> | undefined;
  let tenantsConfigured = false;
  let closed = false;

  function cgroupLayout(t: IsolationTools): CgroupLayout {
    const base = t.cgroups;
    if (base.version === 2) return { version: 2, base: path.join(path.dirname(base.base), DATABASES_CGROUP) };
    const sibling = (dir: string) => path.join(path.dirname(dir), DATABASES_CGROUP);
    return {
      version: 1,
      memory: sibling(base.memory),
      pids: sibling(base.pids),
      cpu: sibling(base.cpu),
      freezer: base.freezer ? sibling(base.freezer) : null,
    };
  }

  const folderOf = (id: string) => path.join(root, id);
  const names = (id: string): EmbeddedPostgresSettingNames => ({
    port: `the port in ${path.join(folderOf(id), 'cluster.json')}`,
    dataDir: 'CODERUNNER_DATA_DIR',
    url: 'CODERUNNER_DATA_DIR',
  });

  function checkId(id: string): void {
    if (!ID.test(id)) {
      throw new SandboxError(`"${id.slice(0, 80)}" is not the id of a project database (localpg-<32 hex>)`);
    }
  }

  function readRecord(id: string): ClusterRecord | undefined {
    try {
      return JSON.parse(fs.readFileSync(path.join(folderOf(id), 'cluster.json'), 'utf8')) as ClusterRecord;
    } catch {
      return undefined;
    }
  }

  function state(s: Omit<ProjectClusterState, 'sandboxId' | 'projectId' | 'port'>, r: ClusterRecord): void {
    options.onState?.({ ...s, sandboxId: r.id, projectId: r.projectId, port: r.port });
  }

  /** `databases/.template`: a cluster folder initdb'd once, copied for each new project. */
  function ensureTemplate(): Promise<string> {
    template ??= (async () => {
      const dir = path.join(root, '.template');
      if (fs.existsSync(path.join(dir, 'pg', 'PG_VERSION'))) return dir;
      fs.mkdirSync(root, { recursive: true, mode: 0o711 });
      const tmp = path.join(root, `.template-${process.pid}-${randomBytes(4).toString('hex')}`);
      try {
        await initEmbeddedPostgres({ dataDir: tmp, env: names('.template') });
        // The app's role and database are made here once (CREATE DATABASE costs seconds on a busy
        // machine); each copy only gets passwords of its own.
        const cluster = await startEmbeddedPostgres({
          dataDir: tmp,
          port: await pickPort(),
          env: names('.template'),
          settings: { max_connections: '10', shared_buffers: '16MB' },
        });
        try {
          const pool = new pg.Pool({ connectionString: cluster.url('postgres'), max: 1 });
          try {
            await pool.query(
              `CREATE ROLE ${APP_ROLE} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS ` +
                `CONNECTION LIMIT ${APP_CONNECTION_LIMIT}`,
            );
            await createAppDatabase(pool);
            for (const db of ['postgres', 'template1']) {
              await pool.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${db} FROM PUBLIC`);
            }
            await pool.query('CHECKPOINT');
          } finally {
            await pool.end();
          }
        } finally {
          await cluster.stop();
        }
        for (const f of ['owner', 'postgres.log', 'postgres.log.1'])
          fs.rmSync(path.join(tmp, f), { force: true });
        try {
          fs.renameSync(tmp, dir);
        } catch {
          // another process made it first
          fs.rmSync(tmp, { recursive: true, force: true });
        }
      } catch (err) {
        fs.rmSync(tmp, { recursive: true, force: true });
        throw err;
      }
      return dir;
    })();
    template.catch(() => {
      template = undefined;
    });
    return template;
  }

  function passwdFiles(folder: string, uid: number): { passwd: string; group: string } {
    const passwd = path.join(folder, 'passwd');
    const group = path.join(folder, 'group');
    fs.writeFileSync(
      passwd,
      `root:x:0:0:root:/root:/usr/sbin/nologin\npostgres:x:${uid}:${uid}:postgres:/nonexistent:/usr/sbin/nologin\n`,
      { mode: 0o644 },
    );
    fs.writeFileSync(group, `root:x:0:\npostgres:x:${uid}:\n`, { mode: 0o644 });
    return { passwd, group };
  }

  /** The postmaster's command line: join the cgroup, bubblewrap, drop to the cluster's uid. */
  function wrapper(
    record: ClusterRecord,
    limits: ResourceLimits,
    procs: string[],
    t: IsolationTools,
    uid: number,
  ) {
    const folder = folderOf(record.id);
    const files = passwdFiles(folder, uid);
    const seccompFile = path.join(root, '.seccomp.bpf');
    return (command: { file: string; args: string[] }) => {
      const binary = fs.realpathSync(command.file);
      const native = path.dirname(path.dirname(binary));
      if (!fs.existsSync(seccompFile)) {
        const tmp = `${seccompFile}.${process.pid}`;
        fs.writeFileSync(tmp, t.seccomp, { mode: 0o600 });
        fs.renameSync(tmp, seccompFile);
      }
      const filterFd = fs.openSync(seccompFile, 'r');
      const join =
        'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"';
      const bwrap = [
        '--unshare-uts',
        '--unshare-cgroup-try',
        '--hostname',
        'database',
        '--new-session',
        ...SETPRIV_CAPS,
        ...systemArgs(),
        '--perms',
        '0755',
        '--dir',
        '/etc',
        '--ro-bind-try',
        '/etc/localtime',
        '/etc/localtime',
        '--ro-bind',
        files.passwd,
        '/etc/passwd',
        '--ro-bind',
        files.group,
        '/etc/group',
        '--proc',
        '/proc',
        '--dev',
        '/dev',
        '--perms',
        '1777',
        '--size',
        String(limits.memoryMb * 1024 * 1024), // memory-backed: counted in the cgroup's memory
        '--tmpfs',
        '/dev/shm',
        '--perms',
        '1777',
        '--size',
        String(16 * 1024 * 1024),
        '--tmpfs',
        '/tmp',
        // bubblewrap makes missing parents 0700: the cluster's uid must pass through them.
        ...parents(native, ['/usr']),
        '--ro-bind',
        native,
        native,
        ...parents(path.join(folder, 'pg'), ['/usr', native]),
        '--bind',
        path.join(folder, 'pg'),
        path.join(folder, 'pg'),
        '--chdir',
        '/',
        '--seccomp',
        String(SECCOMP_FD),
      ];
      return {
        file: '/bin/sh',
        args: [
          '-c',
          join,
          'sh',
          String(procs.length),
          ...procs,
          t.bwrap,
          ...bwrap,
          '--',
          ...dropPrivileges(t.setpriv, uid),
          binary,
          ...command.args,
        ],
        extraStdio: ['ignore', 'ignore', filterFd] as (number | 'ignore')[],
        spawned: () => fs.closeSync(filterFd),
      };
    };
  }

  async function openCluster(record: ClusterRecord): Promise<Open> {
    const limits = await options.limits(record.projectId);
    const folder = folderOf(record.id);
    let cgroup: SandboxCgroup | null = null;
    let wrap: ReturnType<typeof wrapper> | undefined;
    if (tools && layout && record.uid !== undefined) {
      if (!tenantsConfigured) {
        if (!cgroupsWritable(layout)) throw new SandboxError(`cannot create the cgroup ${DATABASES_CGROUP}`);
        configureTenants(layout, options.tenantCpus ?? tenantCpuBudget());
        // The default weight, as the shared cluster had in the server's group: a starved database
        // stalls every request of its app. The cap above still keeps the control plane's reserve.
        if (layout.version === 2) fs.writeFileSync(path.join(layout.base, 'cpu.weight'), '100');
        else fs.writeFileSync(path.join(layout.cpu, 'cpu.shares'), '1024');
        tenantsConfigured = true;
      }
      cgroup = new SandboxCgroup(layout, record.id);
      // The database's share: the plan's memory, processes and CPUs (a database at the disk cap is
      // handled by the watcher, not the cgroup).
      cgroup.create(limits);
      wrap = wrapper(record, limits, cgroup.leaf('postgres'), tools, record.uid);
    }
    let cluster: EmbeddedPostgres;
    try {
      cluster = await startEmbeddedPostgres({
        dataDir: folder,
        port: record.port,
        env: names(record.id),
        settings: clusterSettings(limits),
        ...(record.uid !== undefined ? { runAs: { uid: record.uid, gid: record.uid } } : {}),
        ...(wrap ? { wrap } : {}),
        // What is left of a killed postmaster's backends goes before a new one starts.
        // (A v1 freezer is left frozen by kill(): the leaf is made anew.)
        ...(cgroup
          ? {
              beforeStart: async () => {
                await cgroup.kill('postgres');
                cgroup.remove('postgres');
                cgroup.leaf('postgres');
              },
            }
          : {}),
      });
    } catch (err) {
      const message = describe(err);
      const busy = /already in use/.test(message);
      const error = busy
        ? `port ${record.port} on 127.0.0.1, where the database of project ${record.projectId} (${record.id}) listens, is taken by another program: its apps' stored URLs contain that port, so free it (the database is tried again every second while supervised)`
        : message;
      log(`project database ${record.id}: cannot start: ${error}`);
      state({ state: 'failed', error }, record);
      throw new SandboxError(`the database of project ${record.projectId} cannot start: ${error}`, {
        cause: err,
      });
    }
    const open: Open = {
      record,
      pg: cluster,
      pool: adminPool(cluster, record),
      cgroup,
      limits,
      watcher: null,
      disk: { state: 'ok', lastBytes: 0, busy: false },
    };
    cluster.supervise({
      onEvent: (e) => {
        if (e.kind === 'down') state({ state: 'down' }, record);
        else if (e.kind === 'up') state({ state: 'up', mode: e.mode ?? cluster.mode }, record);
        else state({ state: 'failed', error: describe(e.error) }, record);
      },
    });
    state({ state: 'up', mode: cluster.mode }, record);
    // Over the cap when the last server stopped: the watcher undoes it once under again.
    try {
      const { rows } = await open.pool.query<{ login: boolean | null; ro: boolean }>(
        `SELECT (SELECT rolcanlogin FROM pg_roles WHERE rolname = $1) AS login,
                EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
                         WHERE d.datname = $2 AND s.setrole = 0
                           AND 'default_transaction_read_only=on' = ANY (s.setconfig)) AS ro`,
        [APP_ROLE, APP_DATABASE],
      );
      if (rows[0]?.login === false) open.disk.state = 'no-login';
      else if (rows[0]?.ro) open.disk.state = 'read-only';
    } catch (err) {
      log(`project database ${record.id}: cannot read its write state: ${describe(err)}`);
    }
    const every = options.diskCheckMs ?? 5000;
    open.watcher = setInterval(() => void checkDisk(open), every);
    open.watcher.unref();
    return open;
  }

  function get(id: string): Promise<Open> {
    checkId(id);
    if (closed) return Promise.reject(new SandboxError('the project databases are closed'));
    let p = opened.get(id);
    if (!p) {
      const record = readRecord(id);
      if (!record) return Promise.reject(new SandboxError(`the project database ${id} no longer exists`));
      p = openCluster(record);
      opened.set(id, p);
      p.catch(() => opened.delete(id));
    }
    return p;
  }

  function adminPool(cluster: EmbeddedPostgres, record: ClusterRecord): pg.Pool {
    const pool = new pg.Pool({
      connectionString: cluster.url('postgres'),
      max: 2,
      idleTimeoutMillis: 10_000,
    });
    pool.on('error', (err) =>
      log(`project database ${record.id}: idle admin connection failed: ${describe(err)}`),
    );
    return pool;
  }

  async function let_go(open: Open, stopCluster: boolean): Promise<void> {
    if (open.watcher) clearInterval(open.watcher);
    await open.pool.end().catch(() => {});
    if (stopCluster) await open.pg.stop();
    else open.pg.release();
  }

  /** The disk cap: over it no writes, back under it writes again (see the module's comment). */
  async function checkDisk(open: Open): Promise<void> {
    if (open.disk.busy || closed) return;
    open.disk.busy = true;
    const r = open.record;
    try {
      const folder = folderOf(r.id);
      // The log is not the tenant's data: kept short instead of counted.
      const logFile = path.join(folder, 'postgres.log');
      const logBytes = (await fs.promises.stat(logFile).catch(() => null))?.size ?? 0;
      if (logBytes > LOG_MAX_BYTES) {
        await fs.promises.truncate(logFile, 0).catch(() => {});
      }
      const cap = open.limits.diskMb * 1024 * 1024;
      let bytes = await folderBytes(path.join(folder, 'pg'));
      if (bytes > cap && open.pg.isRunning()) {
        // WAL no longer needed and the files of dropped tables go at a checkpoint: measure after one.
        await open.pool.query('CHECKPOINT');
        bytes = await folderBytes(path.join(folder, 'pg'));
      }
      const sizeMb = Math.round(bytes / 1024 / 1024);
      const growing = bytes > open.disk.lastBytes + 1024 * 1024;
      open.disk.lastBytes = bytes;
      if (!open.pg.isRunning()) return;
      if (bytes > cap && open.disk.state === 'ok') {
        await open.pool.query(`ALTER DATABASE ${APP_DATABASE} SET default_transaction_read_only = on`);
        await terminateApp(open);
        open.disk.state = 'read-only';
        state({ state: 'read-only', sizeMb, capMb: open.limits.diskMb }, r);
      } else if (bytes > cap * HARD_CAP_FACTOR && growing && open.disk.state === 'read-only') {
        // Read-only was turned off in a session, and the folder went on growing.
        await open.pool.query(`ALTER ROLE ${APP_ROLE} NOLOGIN`);
        await terminateApp(open);
        open.disk.state = 'no-login';
        state({ state: 'no-login', sizeMb, capMb: open.limits.diskMb }, r);
      } else if (bytes > cap && growing) {
        // A session turned read-only off and writes on: it ends.
        await terminateApp(open);
      } else if (bytes <= cap && open.disk.state !== 'ok') {
        await open.pool.query(`ALTER DATABASE ${APP_DATABASE} RESET default_transaction_read_only`);
        await open.pool.query(`ALTER ROLE ${APP_ROLE} LOGIN`);
        open.disk.state = 'ok';
        state({ state: 'writable', sizeMb, capMb: open.limits.diskMb }, r);
      }
    } catch (err) {
      log(`project database ${r.id}: disk check failed: ${describe(err)}`);
    } finally {
      open.disk.busy = false;
    }
  }

  async function terminateApp(open: Open): Promise<void> {
    await open.pool.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [
      APP_ROLE,
    ]);
  }

  /** Creates the app database on the cluster, closed to PUBLIC. */
  async function createAppDatabase(pool: pg.Pool): Promise<void> {
    await pool.query(`CREATE DATABASE ${APP_DATABASE} OWNER ${APP_ROLE} TEMPLATE template0`);
    await pool.query(`REVOKE ALL ON DATABASE ${APP_DATABASE} FROM PUBLIC`);
    await pool.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${APP_DATABASE} TO ${APP_ROLE}`);
  }

  async function removeEverything(id: string, uid: number | undefined): Promise<void> {
    const folder = folderOf(id);
    const pid = runningPostmaster(folder);
    if (pid) await stopPid(pid);
    if (layout && process.getuid?.() === 0) {
      const cgroup = new SandboxCgroup(layout, id);
      await cgroup.kill();
      cgroup.remove();
    }
    await fs.promises.rm(folder, { recursive: true, force: true });
    if (uids && uid !== undefined) await uids.release(uid);
  }

  async function provision(projectId: string): Promise<DatabaseInfo> {
    const started = Date.now();
    let last = started;
    const steps: string[] = [];
    const step = (name: string) => {
      const now = Date.now();
      steps.push(`${name} ${now - last} ms`);
      last = now;
    };
    const tpl = await ensureTemplate();
    step('template');
    const id = `${PROJECT_DATABASE_SANDBOX_PREFIX}${randomBytes(16).toString('hex')}`;
    const folder = folderOf(id);
    let uid: number | undefined;
    try {
      uid = uids ? await uids.claim(folder) : undefined;
      await fs.promises.mkdir(folder, { mode: 0o711 });
      // One cp process (copy-on-write where the filesystem can): fs.cp copies file by file in JS.
      await execFileAsync('cp', ['-a', '--reflink=auto', path.join(tpl, 'pg'), path.join(folder, 'pg')]);
      await fs.promises.copyFile(
        path.join(tpl, 'pg-superuser-password'),
        path.join(folder, 'pg-superuser-password'),
      );
      const record: ClusterRecord = {
        id,
        projectId,
        port: await pickPort(),
        ...(uid !== undefined ? { uid } : {}),
        createdAt: new Date().toISOString(),
      };
      await fs.promises.writeFile(path.join(folder, 'cluster.json'), JSON.stringify(record), { mode: 0o600 });
      step('copy');
      const open = await get(id);
      step('start');
      await open.pg.setSuperuserPassword(randomBytes(24).toString('hex'));
      const old = open.pool;
      open.pool = adminPool(open.pg, record);
      await old.end().catch(() => {});
      const password = randomBytes(32).toString('base64url');
      // The template's role, which had no password and could not log in.
      await open.pool.query(
        `ALTER ROLE ${APP_ROLE} LOGIN PASSWORD ${quoteLiteral(scramSha256Verifier(password))}`,
      );
      step('passwords');
      const connectionInfo: DatabaseConnectionInfo = {
        host: '127.0.0.1',
        port: record.port,
        user: APP_ROLE,
        password,
        database: APP_DATABASE,
        url: `postgres://${APP_ROLE}:${encodeURIComponent(password)}@127.0.0.1:${record.port}/${APP_DATABASE}`,
      };
      await verifyLogin(connectionInfo.url);
      step('login');
      log(
        `project database ${id}: created for project ${projectId} on 127.0.0.1:${record.port} in ${Date.now() - started} ms (${steps.join(', ')})`,
      );
      return { sandboxId: id, connectionInfo };
    } catch (err) {
      const pending = opened.get(id);
      opened.delete(id);
      if (pending) await pending.then((o) => let_go(o, true)).catch(() => {});
      await removeEverything(id, uid).catch(() => {});
      throw new SandboxError(`could not create the database of project ${projectId}: ${describe(err)}`, {
        cause: err,
      });
    }
  }

  return {
    provision,
    async prepare() {
      await ensureTemplate();
    },
    async startAll(ids) {
      await Promise.all(
        ids.map(async (id) => {
          if (!ID.test(id) || !readRecord(id)) {
            log(`project database ${id}: its folder is gone; not started`);
            return;
          }
          await get(id).catch(() => {}); // logged and reported as `failed`
        }),
      );
    },
    async reset(id) {
      const open = await get(id);
      await open.pool.query(`DROP DATABASE IF EXISTS ${APP_DATABASE} WITH (FORCE)`);
      await createAppDatabase(open.pool);
      await open.pool.query(`ALTER ROLE ${APP_ROLE} LOGIN`);
      open.disk.state = 'ok';
      log(`project database ${id}: reset (the app database dropped and created again, empty)`);
    },
    async destroy(id) {
      checkId(id);
      const pending = opened.get(id);
      opened.delete(id);
      if (pending) await pending.then((o) => let_go(o, true)).catch(() => {});
      const record = readRecord(id);
      await removeEverything(id, record?.uid);
      if (record) state({ state: 'stopped' }, record);
      log(`project database ${id}: destroyed`);
    },
    portOf(id) {
      return ID.test(id) ? readRecord(id)?.port : undefined;
    },
    async clusterOf(id) {
      const open = await get(id);
      return {
        sandboxId: id,
        projectId: open.record.projectId,
        dataDir: path.join(folderOf(id), 'pg'),
        superuserUrl: open.pg.url('postgres'),
        port: open.record.port,
        async stop() {
          opened.delete(id);
          await let_go(open, true);
        },
        async start() {
          await get(id);
        },
      };
    },
    async sizeOf(id) {
      checkId(id);
      return folderBytes(path.join(folderOf(id), 'pg'));
    },
    async close(opts = {}) {
      closed = true;
      const all = [...opened.values()];
      opened.clear();
      await Promise.all(all.map((p) => p.then((o) => let_go(o, opts.stopClusters === true)).catch(() => {})));
    },
  };
}

async function verifyLogin(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
  } finally {
    await client.end().catch(() => {});
  }
}
