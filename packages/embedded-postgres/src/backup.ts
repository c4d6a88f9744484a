/**
 * Online physical backups of a running cluster and their restore, with nothing but a superuser
 * connection and the data folder (the embedded binaries have no pg_dump or pg_basebackup).
 *
 * A backup follows PostgreSQL's "Making a Base Backup Using the Low Level API": on one held connection
 * `pg_backup_start`, a copy of the data folder, `pg_backup_stop`, its label written as `backup_label`,
 * and the WAL from the start through the stop segment. A temporary replication slot, created first on
 * that connection, keeps those WAL segments from being recycled while the copy runs, whatever
 * `wal_keep_size` and the checkpoints do; it disappears with the connection. The archive is a gzipped
 * tar holding one folder, `pgdata/`, that PostgreSQL 17 starts as it is (crash recovery from the label
 * replays the included WAL up to the backup's end, then the cluster is ready).
 *
 * The archive holds the roles (password hashes included) and all data: it is secret material, written
 * 0600 in folders created 0700. Beside each `<id>.tar.gz` an `<id>.json` holds its metadata and sha256.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import pg from 'pg';
import * as tar from 'tar';
import tarStream from 'tar-stream';
import { chownTree } from './os-user';
import { processAlive } from './processes';

export class BackupError extends Error {
  override name = 'BackupError';
}

/** The folder inside every archive that holds the data folder. */
export const ARCHIVE_ROOT = 'pgdata';
const ARCHIVE_SUFFIX = '.tar.gz';

export interface BackupInfo {
  /** The archive's name without `.tar.gz`. */
  id: string;
  label: string;
  /** ISO 8601, when the backup finished. */
  createdAt: string;
  /** Bytes of the compressed archive. */
  sizeBytes: number;
  /** Bytes of data folder and WAL before compression. */
  dataBytes: number;
  /** Hex sha256 of the archive file. */
  sha256: string;
  /** The server's `server_version`, e.g. `17.10`. */
  postgresVersion: string;
  /** The databases of the cluster (templates left out). */
  databases: string[];
  startLsn: string;
  stopLsn: string;
  walFiles: string[];
  durationMs: number;
  /** Whatever the caller asked to keep with the backup (e.g. why it was taken). */
  extra?: Record<string, string | number | boolean>;
}

/** A backup's metadata and where its archive is. */
export interface StoredBackup extends BackupInfo {
  archive: string;
}

export interface BackupOptions {
  /** A superuser URL of the running cluster. */
  superuserUrl: string;
  /** The cluster's data folder (the one holding PG_VERSION), as the server sees it. */
  clusterDir: string;
  /** Where the archive goes; must end with `.tar.gz`. Its metadata is written beside it as `<id>.json`. */
  destFile: string;
  label: string;
  extra?: BackupInfo['extra'];
  /** gzip level, 1 (fast) to 9 (small); default 3. */
  compressionLevel?: number;
}

/** Folders whose contents a base backup leaves out (their files are rebuilt at start-up). */
const EXCLUDED_CONTENTS = new Set([
  'pg_wal', // added separately: exactly the segments the backup needs
  'pg_replslot',
  'pg_stat_tmp',
  'pg_dynshmem',
  'pg_notify',
  'pg_serial',
  'pg_snapshots',
  'pg_subtrans',
]);
/** Files of the top folder a base backup leaves out: a running server's, or a backup's own. */
const EXCLUDED_TOP_FILES = new Set([
  'postmaster.pid',
  'postmaster.opts',
  'backup_label',
  'tablespace_map',
  'backup_label.old',
  'postgresql.auto.conf.tmp',
  'current_logfiles.tmp',
]);
const TEMP_PREFIX = 'pgsql_tmp';

export function archivePath(dir: string, id: string): string {
  return path.join(dir, `${id}${ARCHIVE_SUFFIX}`);
}

function metadataPath(archive: string): string {
  return `${archive.slice(0, -ARCHIVE_SUFFIX.length)}.json`;
}

function idOf(archive: string): string {
  return path.basename(archive).slice(0, -ARCHIVE_SUFFIX.length);
}

/** Counts and hashes the bytes flowing through. */
class Digest extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.push(chunk);
    done();
  }
}

/** Writes `data` to a temp file beside `file`, then renames it over: readers see all or nothing. */
function writeFileAtomic(file: string, data: string): void {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  fs.writeFileSync(tmp, data, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/** WAL segment file names from `first` through `last` (same timeline), e.g. 000000010000000000000003. */
function walSegments(first: string, last: string, segmentBytes: number): string[] {
  const perId = 0x100000000n / BigInt(segmentBytes);
  const parse = (name: string) => ({
    tli: name.slice(0, 8),
    segno: BigInt(`0x${name.slice(8, 16)}`) * perId + BigInt(`0x${name.slice(16, 24)}`),
  });
  const a = parse(first);
  const b = parse(last);
  if (a.tli !== b.tli || b.segno < a.segno) {
    throw new BackupError(`unexpected WAL range ${first} … ${last}`);
  }
  const hex = (n: bigint) => n.toString(16).toUpperCase().padStart(8, '0');
  const names: string[] = [];
  for (let s = a.segno; s <= b.segno; s++) names.push(`${a.tli}${hex(s / perId)}${hex(s % perId)}`);
  return names;
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Puts tar entries into a pack stream one at a time, with back-pressure. */
class ArchiveWriter {
  dataBytes = 0;
  private readonly pack: tarStream.Pack;
  constructor(pack: tarStream.Pack) {
    this.pack = pack;
  }

  directory(name: string, mtime: Date): Promise<void> {
    return this.entry({ name: `${name}/`, type: 'directory', mode: 0o700, mtime });
  }

  buffer(name: string, data: Buffer): Promise<void> {
    this.dataBytes += data.length;
    return new Promise((resolve, reject) =>
      this.pack.entry({ name, mode: 0o600, mtime: new Date() }, data, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  }

  /**
   * Copies a file as it is now. A file that vanished is left out; one that shrank while being read
   * is padded with zeros to the size announced in its header; one that grew is cut at that size
   * (what PostgreSQL's own base backup does: replaying the WAL repairs every such page).
   */
  async file(name: string, source: string): Promise<void> {
    let handle: fs.promises.FileHandle;
    try {
      handle = await fs.promises.open(source, 'r');
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    try {
      const st = await handle.stat();
      const size = st.size;
      let entry!: Sink;
      const finished = new Promise<void>((resolve, reject) => {
        entry = this.pack.entry({ name, size, mode: 0o600, mtime: st.mtime }, (err) =>
          err ? reject(err) : resolve(),
        );
      });
      const chunk = Buffer.allocUnsafe(1024 * 1024);
      let offset = 0;
      while (offset < size) {
        const want = Math.min(chunk.length, size - offset);
        const { bytesRead } = await handle.read(chunk, 0, want, offset);
        if (bytesRead === 0) {
          await write(entry, Buffer.alloc(size - offset));
          offset = size;
          break;
        }
        await write(entry, Buffer.from(chunk.subarray(0, bytesRead)));
        offset += bytesRead;
      }
      entry.end(null);
      await finished;
      this.dataBytes += size;
    } finally {
      await handle.close();
    }
  }

  private entry(header: Parameters<tarStream.Pack['entry']>[0]): Promise<void> {
    return new Promise((resolve, reject) =>
      this.pack.entry(header, (err) => (err ? reject(err) : resolve())),
    );
  }
}

type Sink = ReturnType<tarStream.Pack['entry']>;

function write(stream: Sink, data: Buffer): Promise<void> {
  if (stream.write(data)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      stream.off('error', onError);
      resolve();
    };
    const onError = (err: Error) => {
      stream.off('drain', onDrain);
      reject(err);
    };
    stream.once('drain', onDrain);
    stream.once('error', onError);
  });
}

/** Copies the data folder into the archive, leaving out what a base backup must not contain. */
async function copyDataFolder(out: ArchiveWriter, clusterDir: string): Promise<void> {
  const walk = async (rel: string): Promise<void> => {
    const abs = path.join(clusterDir, rel);
    let names: string[];
    try {
      names = (await fs.promises.readdir(abs)).sort();
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    for (const name of names) {
      if (name.startsWith(TEMP_PREFIX) || name.startsWith('pg_internal.init')) continue;
      if (rel === '' && EXCLUDED_TOP_FILES.has(name)) continue;
      const relPath = rel ? `${rel}/${name}` : name;
      let st: fs.Stats;
      try {
        st = await fs.promises.lstat(path.join(clusterDir, relPath));
      } catch (err) {
        if (isMissing(err)) continue;
        throw err;
      }
      const inArchive = `${ARCHIVE_ROOT}/${relPath}`;
      if (rel === 'pg_tblspc') {
        throw new BackupError(
          'the cluster has tablespaces, which this backup does not copy; move their tables to pg_default first',
        );
      }
      if (st.isDirectory() || (rel === '' && name === 'pg_wal' && st.isSymbolicLink())) {
        await out.directory(inArchive, st.mtime);
        if (rel === '' && EXCLUDED_CONTENTS.has(name)) continue;
        await walk(relPath);
      } else if (st.isFile()) {
        await out.file(inArchive, path.join(clusterDir, relPath));
      }
      // Sockets, fifos and stray links have no place in a data folder: left out.
    }
  };
  const top = await fs.promises.stat(clusterDir);
  await out.directory(ARCHIVE_ROOT, top.mtime);
  await walk('');
  const now = new Date();
  for (const dir of ['pg_wal/archive_status', 'pg_wal/summaries']) {
    await out.directory(`${ARCHIVE_ROOT}/${dir}`, now);
  }
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => {}); // a dropped connection fails the query in flight: reported there
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    const code = (err as NodeJS.ErrnoException).code;
    throw new BackupError(
      code === 'ECONNREFUSED' || code === 'ECONNRESET'
        ? 'the database is not running: start it before taking a backup'
        : `cannot connect to the database to back it up: ${(err as Error).message}`,
    );
  }
  return client;
}

/**
 * Takes an online backup of the running cluster in `clusterDir` into `destFile` (written under a
 * temporary name and renamed when complete) and writes its metadata beside it. Writers go on
 * meanwhile; the archive restores the cluster as it was when the backup ended.
 */
export async function backupCluster(opts: BackupOptions): Promise<StoredBackup> {
  const started = Date.now();
  const clusterDir = path.resolve(opts.clusterDir);
  const destFile = path.resolve(opts.destFile);
  if (!destFile.endsWith(ARCHIVE_SUFFIX)) {
    throw new BackupError(`a backup archive's name ends with ${ARCHIVE_SUFFIX}: ${destFile}`);
  }
  if (!fs.existsSync(path.join(clusterDir, 'PG_VERSION'))) {
    throw new BackupError(`${clusterDir} is not a PostgreSQL data folder (no PG_VERSION)`);
  }
  const client = await connect(opts.superuserUrl);
  const tmp = `${destFile}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const settings = await client.query<{ name: string; setting: string }>(
      `SELECT name, setting FROM pg_settings
        WHERE name IN ('data_directory', 'wal_segment_size', 'server_version', 'wal_level')`,
    );
    const setting = (name: string) => settings.rows.find((r) => r.name === name)?.setting ?? '';
    if (path.resolve(setting('data_directory')) !== fs.realpathSync(clusterDir)) {
      throw new BackupError(
        `the server at that URL serves ${setting('data_directory')}, not ${clusterDir}: refusing to mix them`,
      );
    }
    if (setting('wal_level') === 'minimal') {
      throw new BackupError('the cluster runs with wal_level=minimal: online backups need wal_level=replica');
    }
    const segmentBytes = Number(setting('wal_segment_size'));
    const databases = (
      await client.query<{ datname: string }>(
        'SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname',
      )
    ).rows.map((r) => r.datname);

    // Reserves the WAL from the last checkpoint on, until this session ends (a temporary slot).
    const slot = `coderunner_backup_${process.pid}_${randomBytes(3).toString('hex')}`;
    try {
      await client.query('SELECT pg_create_physical_replication_slot($1, true, true)', [slot]);
    } catch (err) {
      throw new BackupError(
        `cannot reserve the WAL for the backup (${(err as Error).message}): the cluster needs max_replication_slots ≥ 1 free`,
      );
    }
    const start = await client.query<{ lsn: string; file: string }>(
      'SELECT lsn::text, pg_walfile_name(lsn) AS file FROM pg_backup_start($1, true) AS lsn',
      [opts.label],
    );
    const startLsn = start.rows[0]!.lsn;

    fs.mkdirSync(path.dirname(destFile), { recursive: true, mode: 0o700 });
    const pack = tarStream.pack();
    const digest = new Digest();
    const written = pipeline(
      pack,
      zlib.createGzip({ level: opts.compressionLevel ?? 3 }),
      digest,
      fs.createWriteStream(tmp, { mode: 0o600 }),
    );
    const out = new ArchiveWriter(pack);
    let stop: { lsn: string; labelfile: string; spcmapfile: string; file: string };
    let walFiles: string[];
    try {
      await copyDataFolder(out, clusterDir);
      const stopped = await client.query<typeof stop>(
        `SELECT lsn::text, labelfile, spcmapfile, pg_walfile_name(lsn) AS file
           FROM pg_backup_stop(false)`,
      );
      stop = stopped.rows[0]!;
      if (stop.spcmapfile.trim()) {
        throw new BackupError(
          'the cluster has tablespaces, which this backup does not copy; move their tables to pg_default first',
        );
      }
      await out.buffer(`${ARCHIVE_ROOT}/backup_label`, Buffer.from(stop.labelfile));
      walFiles = walSegments(start.rows[0]!.file, stop.file, segmentBytes);
      const walDir = path.join(clusterDir, 'pg_wal');
      for (const name of fs.readdirSync(walDir).filter((n) => n.endsWith('.history'))) {
        await out.file(`${ARCHIVE_ROOT}/pg_wal/${name}`, path.join(walDir, name));
      }
      for (const name of walFiles) {
        const file = path.join(walDir, name);
        if (!fs.existsSync(file)) {
          throw new BackupError(`the WAL segment ${name} that the backup needs is gone from ${walDir}`);
        }
        await out.file(`${ARCHIVE_ROOT}/pg_wal/${name}`, file);
      }
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
      await written.catch(() => {});
      throw err;
    }
    await written;
    const fd = fs.openSync(tmp, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    const info: BackupInfo = {
      id: idOf(destFile),
      label: opts.label,
      createdAt: new Date().toISOString(),
      sizeBytes: digest.bytes,
      dataBytes: out.dataBytes,
      sha256: digest.hash.digest('hex'),
      postgresVersion: setting('server_version').split(' ')[0] ?? '',
      databases,
      startLsn,
      stopLsn: stop.lsn,
      walFiles,
      durationMs: Date.now() - started,
      ...(opts.extra ? { extra: opts.extra } : {}),
    };
    fs.renameSync(tmp, destFile);
    writeFileAtomic(metadataPath(destFile), `${JSON.stringify(info, null, 2)}\n`);
    return { ...info, archive: destFile };
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    if (err instanceof BackupError) throw err;
    throw new BackupError(`the backup failed: ${(err as Error).message}`);
  } finally {
    // Ends a backup still in progress and drops the temporary slot.
    await client.end().catch(() => {});
  }
}

/** The backup's metadata, or undefined when `archive` has none beside it. */
export function readBackupInfo(archive: string): BackupInfo | undefined {
  try {
    return JSON.parse(fs.readFileSync(metadataPath(archive), 'utf8')) as BackupInfo;
  } catch {
    return undefined;
  }
}

/** The backups in `dir` that have their metadata and archive, newest first. */
export function listBackups(dir: string): StoredBackup[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if (isMissing(err)) return [];
    throw err;
  }
  const backups: StoredBackup[] = [];
  for (const name of names) {
    if (!name.endsWith(ARCHIVE_SUFFIX)) continue;
    const archive = path.join(dir, name);
    const info = readBackupInfo(archive);
    if (info) backups.push({ ...info, archive });
  }
  return backups.sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id));
}

/**
 * Keeps the newest `keep` backups of `dir` and deletes the others; also deletes leftovers of backups
 * that did not finish (temp files, an archive without metadata) older than an hour. Returns the
 * deleted backups.
 */
export function pruneBackups(dir: string, keep: number): StoredBackup[] {
  const backups = listBackups(dir);
  const removed = backups.slice(Math.max(0, keep));
  for (const b of removed) {
    fs.rmSync(metadataPath(b.archive), { force: true }); // first: a half-deleted backup is not listed
    fs.rmSync(b.archive, { force: true });
  }
  const listed = new Set(backups.map((b) => path.basename(b.archive)));
  const hourAgo = Date.now() - 3600_000;
  for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const orphan = name.includes('.tmp-') || (name.endsWith(ARCHIVE_SUFFIX) && !listed.has(name));
    if (!orphan) continue;
    const file = path.join(dir, name);
    try {
      if (fs.statSync(file).mtimeMs < hourAgo) fs.rmSync(file, { force: true });
    } catch {
      // removed meanwhile
    }
  }
  return removed;
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export interface RestoreOptions {
  /** The cluster's data folder (holding PG_VERSION); it may be missing. The cluster must be stopped. */
  clusterDir: string;
  /** A `.tar.gz` made by `backupCluster` (checked against the sha256 beside it when there is one). */
  archive: string;
  /** Owner of the restored files; default: the owner of the current data folder. */
  owner?: { uid: number; gid: number };
}

export interface RestoredCluster {
  /** Where the data folder that was replaced now is (undefined when there was none). */
  asideDir: string | undefined;
  /** The restored cluster started: delete the replaced data folder. */
  commit(): Promise<void>;
  /** The restored cluster is not wanted (it did not start): put the replaced data folder back. */
  rollback(): Promise<void>;
}

function runningPostmaster(clusterDir: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(clusterDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 && processAlive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Data folders are 0700 and their files 0600 (PostgreSQL refuses a folder others can read). */
function restrictModes(dir: string): void {
  const walk = (p: string) => {
    const st = fs.lstatSync(p);
    if (st.isSymbolicLink()) return;
    if (st.isDirectory()) {
      fs.chmodSync(p, 0o700);
      for (const name of fs.readdirSync(p)) walk(path.join(p, name));
    } else {
      fs.chmodSync(p, 0o600);
    }
  };
  walk(dir);
}

const stamp = () => new Date().toISOString().replace(/[:.]/g, '-');

/**
 * Replaces the data folder of a STOPPED cluster with the archive's. The archive is checked and
 * extracted beside the data folder first; only a complete extraction is swapped in, and the replaced
 * folder is kept aside until `commit()` (the restored cluster started) or put back by `rollback()`.
 * A corrupt or truncated archive fails before the current data folder is touched.
 */
export async function restoreCluster(opts: RestoreOptions): Promise<RestoredCluster> {
  const clusterDir = path.resolve(opts.clusterDir);
  const archive = path.resolve(opts.archive);
  const running = runningPostmaster(clusterDir);
  if (running) {
    throw new BackupError(`the database is running (pid ${running}): stop it before restoring`);
  }
  if (!fs.existsSync(archive)) throw new BackupError(`no backup archive at ${archive}`);
  const info = readBackupInfo(archive);
  if (info) {
    const actual = await sha256File(archive);
    if (actual !== info.sha256) {
      throw new BackupError(
        `the backup ${idOf(archive)} is damaged (its checksum does not match the one recorded when it was taken); choose another backup`,
      );
    }
  }
  let owner = opts.owner;
  if (!owner && fs.existsSync(clusterDir)) {
    const st = fs.statSync(clusterDir);
    owner = { uid: st.uid, gid: st.gid };
  }

  const parent = path.dirname(clusterDir);
  const base = path.basename(clusterDir);
  const incoming = path.join(parent, `${base}.restoring-${stamp()}`);
  fs.mkdirSync(incoming, { recursive: true, mode: 0o700 });
  try {
    await tar.x({
      file: archive,
      cwd: incoming,
      strip: 1,
      strict: true,
      preserveOwner: false,
      filter: (p) => p === `${ARCHIVE_ROOT}/` || p.startsWith(`${ARCHIVE_ROOT}/`),
    });
    for (const required of ['PG_VERSION', 'global/pg_control', 'backup_label']) {
      if (!fs.existsSync(path.join(incoming, required))) {
        throw new BackupError(`not a CodeRunner database backup: ${required} is missing from the archive`);
      }
    }
    for (const wal of info?.walFiles ?? []) {
      if (!fs.existsSync(path.join(incoming, 'pg_wal', wal))) {
        throw new BackupError(`the backup is incomplete: WAL segment ${wal} is missing from the archive`);
      }
    }
    restrictModes(incoming);
    if (owner && owner.uid !== process.getuid?.()) chownTree(incoming, owner);
  } catch (err) {
    fs.rmSync(incoming, { recursive: true, force: true });
    if (err instanceof BackupError) throw err;
    throw new BackupError(
      `the backup archive ${path.basename(archive)} cannot be read (${(err as Error).message}); nothing was changed`,
    );
  }

  let asideDir: string | undefined;
  if (fs.existsSync(clusterDir)) {
    asideDir = path.join(parent, `${base}.before-restore-${stamp()}`);
    fs.renameSync(clusterDir, asideDir);
  }
  fs.renameSync(incoming, clusterDir);
  let settled = false;
  const settle = () => {
    if (settled) throw new BackupError('this restore was already committed or rolled back');
    settled = true;
  };
  return {
    asideDir,
    async commit() {
      settle();
      if (asideDir) await fs.promises.rm(asideDir, { recursive: true, force: true });
    },
    async rollback() {
      settle();
      const pid = runningPostmaster(clusterDir);
      if (pid) {
        settled = false;
        throw new BackupError(`the restored database is running (pid ${pid}): stop it before rolling back`);
      }
      const failed = path.join(parent, `${base}.failed-restore-${stamp()}`);
      fs.renameSync(clusterDir, failed);
      if (asideDir) fs.renameSync(asideDir, clusterDir);
      await fs.promises.rm(failed, { recursive: true, force: true });
    },
  };
}
