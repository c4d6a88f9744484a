/**
 * Uploaded projects travel as gzipped tar archives. Uploads are hostile input, so extraction checks
 * every entry in a first pass that writes nothing (paths, links, entry types, counts, sizes), then
 * unpacks into a private folder inside `destDir` and moves the result into place. node-tar's own
 * protections (no `..`, no absolute paths, no writing through symlinks) stay on underneath.
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { Parser, type ReadEntry, Unpack } from 'tar';

/** The archive cannot be used as it is; the message tells the user what to change. */
export class ArchiveError extends Error {
  override name = 'ArchiveError';
}

export interface ExtractOptions {
  /** Most entries (files, folders and links) the archive may hold. */
  maxFiles?: number;
  /** Most bytes its files may hold once unpacked. */
  maxBytes?: number;
}

export const DEFAULT_MAX_FILES = 10_000;
export const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;

/** Bytes, or a stream of them (a Node Readable is an AsyncIterable). */
export type ArchiveInput = Uint8Array | AsyncIterable<Uint8Array | string>;

const NOT_AN_ARCHIVE =
  'the upload is not a gzipped tar archive (make it with `tar -czf app.tar.gz -C <folder> .`)';
const TRIM_HINT = 'leave out generated folders such as node_modules, .venv or build output';
/** Entry types written as they are; anything else (devices, FIFOs, ...) is refused. */
const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);
const ALLOWED_TYPES = new Set([...FILE_TYPES, 'Directory', 'SymbolicLink', 'Link']);

interface Limits {
  maxFiles: number;
  maxBytes: number;
}

/**
 * Unpack a gzipped tar into `destDir` (created when missing; must be empty). Throws ArchiveError,
 * with nothing written, when the archive is malformed or unsafe: absolute paths, `..` segments,
 * links leading out of the project (or through other links), devices, too many entries or bytes.
 */
export async function extractTarGz(
  input: ArchiveInput,
  destDir: string,
  options: ExtractOptions = {},
): Promise<void> {
  const limits: Limits = {
    maxFiles: options.maxFiles ?? DEFAULT_MAX_FILES,
    maxBytes: options.maxBytes ?? DEFAULT_MAX_BYTES,
  };
  const archive = await readInput(input, maxTarBytes(limits));
  if (archive[0] !== 0x1f || archive[1] !== 0x8b) throw new ArchiveError(NOT_AN_ARCHIVE);

  const checker = new EntryChecker(limits);
  await parseTar(archive, limits, new Parser({ strict: true }), (entry) => checker.add(entry));
  checker.checkLinks();

  const root = path.resolve(destDir);
  const created = !fs.existsSync(root);
  await fs.promises.mkdir(root, { recursive: true });
  if ((await fs.promises.readdir(root)).length > 0) throw new Error(`extractTarGz: ${root} is not empty`);
  const staging = await fs.promises.mkdtemp(path.join(root, '.extract-'));
  try {
    const unpack = new Unpack({
      cwd: staging,
      strict: true,
      // As root, node-tar would otherwise give files the uids and gids written in the archive.
      preserveOwner: false,
      // The entries were checked above; this also keeps the staging folder's own mode untouched.
      filter: (entryPath, entry) => {
        sanitizeMode(entry as ReadEntry);
        return normalizeEntryPath(entryPath) !== '';
      },
    });
    await parseTar(archive, limits, unpack);
    for (const name of await fs.promises.readdir(staging)) {
      await fs.promises.rename(path.join(staging, name), path.join(root, name));
    }
    await fs.promises.rmdir(staging);
  } catch (err) {
    await fs.promises.rm(created ? root : staging, { recursive: true, force: true });
    throw err;
  }
}

/** Validates entries as they are listed; everything that cannot be decided per entry waits for checkLinks. */
class EntryChecker {
  private count = 0;
  private bytes = 0;
  /** Latest type written at each path (later entries replace earlier ones on extraction). */
  private readonly types = new Map<string, string>();
  /** Size of each file, for the hard links to it (each is read and written as a copy of its own). */
  private readonly sizes = new Map<string, number>();
  private readonly symlinks: { path: string; via: string[] }[] = [];

  constructor(private readonly limits: Limits) {}

  add(entry: ReadEntry): void {
    const raw = entry.path;
    const entryPath = checkEntryPath(raw);
    if (entryPath === '') return; // `./`: the project folder itself
    if (!ALLOWED_TYPES.has(entry.type)) {
      throw new ArchiveError(
        `archive entry ${raw} is a ${describeType(entry.type)}; only files, folders and links can be uploaded`,
      );
    }
    if (++this.count > this.limits.maxFiles) {
      throw new ArchiveError(`the archive has more than ${this.limits.maxFiles} entries; ${TRIM_HINT}`);
    }
    if (FILE_TYPES.has(entry.type)) {
      this.countBytes(entry.size);
      this.sizes.set(entryPath, entry.size);
    }
    const linkpath = entry.linkpath ?? '';
    if (entry.type === 'SymbolicLink') {
      const resolved = resolveLink(path.posix.dirname(entryPath), linkpath);
      if (resolved === null) {
        throw new ArchiveError(
          `archive entry ${raw} links to ${linkpath}, which is outside the project folder`,
        );
      }
      this.symlinks.push({ path: entryPath, via: resolved.via });
    } else if (entry.type === 'Link') {
      // A hard link names its target from the archive's top (no `..`), and must be a file unpacked before it.
      const target = linkpath.split('/').includes('..') ? undefined : resolveLink('', linkpath)?.target;
      if (target === undefined) {
        throw new ArchiveError(
          `archive entry ${raw} links to ${linkpath}, which is outside the project folder`,
        );
      }
      if (!FILE_TYPES.has(this.types.get(target) ?? '')) {
        throw new ArchiveError(
          `archive entry ${raw} is a hard link to ${linkpath}, which is not a file in the archive`,
        );
      }
      // Counted at its target's size: the stored source, the upload into the sandbox and every
      // rebuild handle it as a file of its own (10,000 links to one large file are not free).
      const size = this.sizes.get(target) ?? 0;
      this.countBytes(size, true);
      this.sizes.set(entryPath, size);
    }
    this.types.set(entryPath, entry.type);
  }

  private countBytes(size: number, link = false): void {
    this.bytes += size;
    if (this.bytes > this.limits.maxBytes) {
      const counted = link ? ', hard links counted as the copies they become' : '';
      throw new ArchiveError(
        `the archive unpacks to more than ${formatBytes(this.limits.maxBytes)}${counted}; ${TRIM_HINT}`,
      );
    }
  }

  /**
   * Links must not be followed while unpacking (an entry under a symlinked folder) nor lead out
   * through other links: with `up -> .`, a link to `up/..` names the project folder's parent.
   */
  checkLinks(): void {
    const isSymlink = (p: string) => this.types.get(p) === 'SymbolicLink';
    for (const entryPath of this.types.keys()) {
      const through = ancestors(entryPath).find(isSymlink);
      if (through) {
        throw new ArchiveError(`archive entry ${entryPath} is inside ${through}, which is a symbolic link`);
      }
    }
    for (const link of this.symlinks) {
      const through = link.via.find(isSymlink);
      if (through) {
        throw new ArchiveError(
          `archive entry ${link.path} links through ${through}, another symbolic link; link to the real path`,
        );
      }
    }
  }
}

/** The entry's path without `./` prefixes or trailing slashes; throws for absolute paths and `..`. */
function checkEntryPath(raw: string): string {
  if (raw.includes('\0'))
    throw new ArchiveError(`archive entry ${JSON.stringify(raw)} has a NUL byte in its name`);
  if (raw.startsWith('/') || /^[a-zA-Z]:[\\/]/.test(raw)) {
    throw new ArchiveError(
      `archive entry ${raw} has an absolute path; paths must be relative to the project folder`,
    );
  }
  if (raw.split(/[\\/]/).includes('..')) {
    throw new ArchiveError(`archive entry ${raw} escapes the project folder (it contains "..")`);
  }
  return normalizeEntryPath(raw);
}

function normalizeEntryPath(raw: string): string {
  return raw
    .split('/')
    .filter((segment) => segment !== '' && segment !== '.')
    .join('/');
}

/**
 * Where `linkpath` leads from folder `from` (both relative to the project folder), and the folders
 * on the way there (which must not be links themselves); null when it is absolute or climbs above
 * the project folder at any step.
 */
function resolveLink(from: string, linkpath: string): { target: string; via: string[] } | null {
  if (linkpath === '' || linkpath.startsWith('/')) return null;
  const segments = normalizeEntryPath(from).split('/').filter(Boolean);
  const via: string[] = [];
  for (const segment of linkpath.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segments.length > 0) via.push(segments.join('/'));
    if (segment !== '..') segments.push(segment);
    else if (segments.pop() === undefined) return null;
  }
  return { target: segments.join('/'), via };
}

/** `a/b/c` → `a`, `a/b`. */
function ancestors(entryPath: string): string[] {
  const segments = entryPath.split('/');
  return segments.slice(0, -1).map((_, i) => segments.slice(0, i + 1).join('/'));
}

/**
 * No setuid/setgid/sticky bits (the server may run as root), and the owner keeps read/write access
 * so that the server can read and remove what it unpacked.
 */
function sanitizeMode(entry: ReadEntry): void {
  if (entry.mode === undefined) return;
  entry.mode = (entry.mode & 0o777) | (entry.type === 'Directory' ? 0o700 : 0o600);
}

function describeType(type: string): string {
  const names: Record<string, string> = {
    CharacterDevice: 'character device',
    BlockDevice: 'block device',
    FIFO: 'named pipe',
  };
  return names[type] ?? `${type} entry`;
}

function formatBytes(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${Math.round(bytes / 1024 / 1024)} MB` : `${Math.round(bytes / 1024)} KB`;
}

/**
 * Bound on the uncompressed tar stream: the files' bytes plus headers and padding (a header block,
 * up to a block of padding and a pax header per entry), so that a gzip bomb is cut off early.
 */
function maxTarBytes(limits: Limits): number {
  return limits.maxBytes + (limits.maxFiles + 16) * 2048 + 1024 * 1024;
}

async function readInput(input: ArchiveInput, maxBytes: number): Promise<Buffer> {
  if (input instanceof Uint8Array) return Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of input) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk);
    total += buffer.length;
    // gzip never makes a tar much bigger: a larger upload cannot fit the limits once unpacked.
    if (total > maxBytes) throw new ArchiveError(`the upload is larger than ${formatBytes(maxBytes)}`);
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * Feed the decompressed archive to a node-tar parser (a list pass or an Unpack) and settle when it
 * is done. `onEntry` may throw an ArchiveError: parsing stops and that error is the result.
 */
function parseTar(
  archive: Buffer,
  limits: Limits,
  parser: Parser,
  onEntry?: (entry: ReadEntry) => void,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const gunzip = zlib.createGunzip();
    let failed = false;
    let tarBytes = 0;
    let onlyZeros = true;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      gunzip.destroy();
      reject(err instanceof ArchiveError ? err : new ArchiveError(describeParseError(err)));
    };
    parser.on('error', (err: { tarCode?: string }) => {
      // node-tar calls a tar of nothing but end-of-archive blocks unrecognised; it is just empty.
      if (err.tarCode === 'TAR_BAD_ARCHIVE' && onlyZeros && !failed) resolve();
      else fail(err);
    });
    parser.on('end', () => {
      if (!failed) resolve();
    });
    if (onEntry) {
      parser.on('entry', (entry: ReadEntry) => {
        try {
          if (!failed) onEntry(entry);
        } catch (err) {
          fail(err);
        }
        entry.resume();
      });
    }
    gunzip.on('error', () => fail(new ArchiveError(NOT_AN_ARCHIVE)));
    gunzip.on('data', (chunk: Buffer) => {
      if (failed) return;
      // node-tar would decompress a compressed tar inside the gzip again, past the byte limit below.
      if (tarBytes === 0 && isCompressed(chunk))
        return fail(new ArchiveError(`${NOT_AN_ARCHIVE}; it is compressed twice`));
      tarBytes += chunk.length;
      onlyZeros &&= chunk.every((byte) => byte === 0);
      if (tarBytes > maxTarBytes(limits)) {
        return fail(
          new ArchiveError(`the archive unpacks to more than ${formatBytes(limits.maxBytes)}; ${TRIM_HINT}`),
        );
      }
      if (!parser.write(chunk)) {
        gunzip.pause();
        parser.once('drain', () => gunzip.resume());
      }
    });
    gunzip.on('end', () => {
      if (!failed) parser.end();
    });
    gunzip.end(archive);
  });
}

function isCompressed(chunk: Buffer): boolean {
  const gzip = chunk[0] === 0x1f && chunk[1] === 0x8b;
  const zstd = chunk.length >= 4 && chunk.readUInt32LE(0) === 0xfd2fb528;
  return gzip || zstd;
}

function describeParseError(err: unknown): string {
  const code = (err as { tarCode?: string; code?: string }).tarCode ?? (err as { code?: string }).code;
  if (code === 'TAR_BAD_ARCHIVE' || code === 'TAR_ENTRY_INVALID') return NOT_AN_ARCHIVE;
  return `the archive could not be unpacked: ${(err as Error).message}`;
}
