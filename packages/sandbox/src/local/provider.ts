/**
 * `SandboxProvider` on this machine: a sandbox is a folder under `rootDir` and the processes running
 * in it (see layout.ts and sandbox.ts), isolated from other sandboxes and from this machine when it
 * can be (see isolation.ts: own uid, namespaces, network and cgroup per sandbox).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  type CreateSandboxOptions,
  SandboxError,
  type SandboxInfo,
  type SandboxMetadata,
  SandboxNotFoundError,
  type SandboxProvider,
} from '../types';
import { LocalBuildCache } from './build-cache';
import {
  configureTenants,
  DEFAULT_LIMITS,
  type ResourceLimits,
  SandboxCgroup,
  tenantCpuBudget,
} from './cgroups';
import { detectIsolation, type IsolationMode, type IsolationStatus } from './isolation';
import {
  ID_PATTERN,
  readRecord,
  removeSandboxFolder,
  type SandboxRecord,
  sandboxPaths,
  writeRecord,
} from './layout';
import { DEFAULT_LOG_MAX_BYTES, DEFAULT_OUTPUT_RATE, type OutputRate } from './logs';
import { createNetns, deleteNetns } from './network';
import { type IsolatedConfig, type LocalConfig, LocalSandbox } from './sandbox';
import { DEFAULT_UID_CLAIMS_DIR, DEFAULT_UID_RANGE, UidAllocator, type UidRange } from './uids';
import { type RunAs, resolveRunAs } from './user';

export interface LocalProviderOptions {
  /** Folder holding one folder per sandbox; created when missing. */
  rootDir: string;
  /**
   * The OS user that runs sandbox code when the server runs as root (ignored otherwise). Default:
   * `coderunner-sandbox`, created when missing; `nobody` when it cannot be created.
   */
  runAsUser?: string;
  /** Between SIGTERM and SIGKILL when stopping processes (default 3 s). */
  killGraceMs?: number;
  /** Cap of each log file in a sandbox's logs/ folder (default 5 MB). */
  logMaxBytes?: number;
  /**
   * How fast a sandbox's output is read (default 1 MB/s after a 4 MB burst): a command writing
   * faster is slowed down, an app's log past it is skipped (its readers are told how much).
   */
  outputRate?: OutputRate;
  /** CODERUNNER_ISOLATION: `auto` (default), `sandbox` (refuse to run without isolation) or `none`. */
  isolation?: IsolationMode;
  /** Uids (and gids) handed to isolated sandboxes, one each (default 3000000-3099999). */
  uidRange?: UidRange;
  /** Where uid claims are kept, shared by every server on this machine (default /var/lib/coderunner/uids). */
  uidClaimsDir?: string;
  /**
   * CPUs all isolated sandboxes may use together (the tenants' cgroup's quota); default the host's
   * CPUs less a reserve for the control plane (tenantCpuBudget). No sandbox gets more than this.
   */
  tenantCpus?: number;
  /**
   * Memory and CPUs of a sandbox while it builds (install, build), when more than its plan's: in
   * force from its creation until `endBuild` (or its app's start) lowers them to its limits.
   * CPUs are clamped to the tenants' quota like every other. Unset: builds get the plan's limits.
   */
  buildLimits?: { memoryMb: number; cpus: number };
  /** Where projects' build caches are kept (default `<rootDir>/.build-cache`, on the same file system). */
  buildCacheDir?: string;
  /** Limits of a new sandbox (by its owner's plan); default DEFAULT_LIMITS (the free plan's). */
  limits?: (metadata: SandboxMetadata) => ResourceLimits | Promise<ResourceLimits>;
  /**
   * Loopback ports of the database this sandbox was given (by its metadata), e.g. the apps' cluster's
   * for a deployment with a database. An isolated sandbox whose commands get a database URL on one
   * of them reaches that port (and only that one) at the same address inside.
   */
  databasePorts?: (metadata: SandboxMetadata) => number[] | Promise<number[]>;
}

export interface LocalProvider extends SandboxProvider {
  /** Whether sandboxes are isolated, and if not, why (throws for `sandbox` when they cannot be). */
  isolation(): IsolationStatus;
}

export const DEFAULT_KILL_GRACE_MS = 3_000;

/** A sandbox is built under `.creating-<id>-<creator pid>`, then renamed to `<id>`. */
const CREATING_PATTERN = /^\.creating-(local-[0-9a-f]{12})-(\d+)$/;
function creatingPath(rootDir: string, id: string): string {
  return path.join(rootDir, `.creating-${id}-${process.pid}`);
}

/** Whether a process with this pid exists (one we may not signal exists too). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function createLocalProvider(options: LocalProviderOptions): LocalProvider {
  return new LocalSandboxProvider(options);
}

class LocalSandboxProvider implements LocalProvider {
  readonly name = 'local';
  readonly sandboxesOnThisHost = true;
  private readonly rootDir: string;
  private config: Promise<LocalConfig> | undefined;

  constructor(private readonly options: LocalProviderOptions) {
    this.rootDir = path.resolve(options.rootDir);
  }

  isolation(): IsolationStatus {
    return detectIsolation(this.options.isolation ?? 'auto');
  }

  async create(opts: CreateSandboxOptions): Promise<LocalSandbox> {
    const config = await this.getConfig();
    const hex = randomBytes(6).toString('hex');
    const id = `local-${hex}`;
    const paths = sandboxPaths(this.rootDir, id);
    if (config.isolation) return this.createIsolated(config, config.isolation, id, hex, opts);
    await prepareRoot(this.rootDir, config.runAs);
    const record: SandboxRecord = {
      version: 1,
      id,
      createdAt: new Date().toISOString(),
      metadata: { ...opts.metadata },
      envs: { ...opts.envs },
      app: null,
      ...(opts.node ? { node: opts.node } : {}),
    };
    // Built under a temporary name, then renamed: list() and connect() never see half a sandbox.
    const building = creatingPath(this.rootDir, id);
    try {
      // Searchable but not listable by the sandbox user, who may enter app/ and home/ only.
      await fs.promises.mkdir(building, { mode: 0o711 });
      await fs.promises.chmod(building, 0o711);
      for (const dir of ['app', 'home', 'logs']) {
        const full = path.join(building, dir);
        await fs.promises.mkdir(full, { mode: 0o700 });
        if (config.runAs && dir !== 'logs') await fs.promises.chown(full, config.runAs.uid, config.runAs.gid);
      }
      writeRecord(building, record);
      await fs.promises.rename(building, paths.root);
    } catch (err) {
      await fs.promises.rm(building, { recursive: true, force: true });
      throw err;
    }
    return new LocalSandbox(config, paths, record);
  }

  /**
   * An isolated sandbox: its own uid (claimed), cgroup (with its limits) and network namespace, and
   * a folder only root may enter (0700): its code reaches app/ and home/ through bind mounts only.
   */
  private async createIsolated(
    config: LocalConfig,
    iso: IsolatedConfig,
    id: string,
    hex: string,
    opts: CreateSandboxOptions,
  ): Promise<LocalSandbox> {
    const netns = `cr-${hex}`;
    // `ip netns add` (a process: a few ms) runs while the uid is claimed and the folder made.
    const netnsMade = createNetns(iso.tools, netns);
    netnsMade.catch(() => {});
    const paths = sandboxPaths(this.rootDir, id);
    const building = creatingPath(this.rootDir, id);
    let uid: number | undefined;
    let limits: ResourceLimits;
    try {
      await fs.promises.mkdir(this.rootDir, { recursive: true, mode: 0o700 });
      uid = await iso.uids.claim(building);
      limits = { ...DEFAULT_LIMITS, ...(await this.options.limits?.(opts.metadata)) };
    } catch (err) {
      await netnsMade.catch(() => {});
      await deleteNetns(iso.tools, netns);
      // Nothing has run as it: the uid goes back at once.
      if (uid !== undefined) await iso.uids.release(uid);
      throw err;
    }
    const cgroup = new SandboxCgroup(iso.tools.cgroups, id);
    const record: SandboxRecord = {
      version: 1,
      id,
      createdAt: new Date().toISOString(),
      metadata: { ...opts.metadata },
      envs: { ...opts.envs },
      app: null,
      isolation: {
        uid,
        netns,
        limits,
        build: buildPhase(limits, this.options.buildLimits),
        outbound: null,
        inbound: null,
      },
      ...(opts.node ? { node: opts.node } : {}),
    };
    try {
      await iso.uids.addPath(uid, paths.root);
      await fs.promises.mkdir(building, { mode: 0o700 });
      await fs.promises.chmod(building, 0o700);
      for (const dir of ['app', 'home', 'logs']) {
        const full = path.join(building, dir);
        await fs.promises.mkdir(full, { mode: 0o700 });
        if (dir !== 'logs') await fs.promises.chown(full, uid, uid);
      }
      await fs.promises.writeFile(
        path.join(building, 'passwd'),
        `root:x:0:0:root:/root:/usr/sbin/nologin\napp:x:${uid}:${uid}:app:/sandbox/home:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`,
        { mode: 0o644 },
      );
      await fs.promises.writeFile(
        path.join(building, 'group'),
        `root:x:0:\napp:x:${uid}:\nnogroup:x:65534:\n`,
        { mode: 0o644 },
      );
      cgroup.create({ ...limits, ...record.isolation!.build });
      await netnsMade;
      writeRecord(building, record);
      await fs.promises.rename(building, paths.root);
    } catch (err) {
      await netnsMade.catch(() => {});
      await deleteNetns(iso.tools, netns);
      cgroup.remove();
      // Nothing has run as the uid yet: its folders hold no file of its code.
      await fs.promises.rm(building, { recursive: true, force: true });
      await fs.promises.rm(paths.root, { recursive: true, force: true });
      await iso.uids.release(uid);
      throw err;
    }
    return new LocalSandbox(config, paths, record);
  }

  async connect(id: string): Promise<LocalSandbox> {
    const config = await this.getConfig();
    // The id becomes a path: anything but our own format (e.g. "../x") is simply not found.
    const record = ID_PATTERN.test(id) ? readRecord(sandboxPaths(this.rootDir, id).root) : null;
    if (!record) throw new SandboxNotFoundError(id);
    return new LocalSandbox(config, sandboxPaths(this.rootDir, id), record);
  }

  async kill(id: string): Promise<boolean> {
    if (!ID_PATTERN.test(id)) return false;
    const root = sandboxPaths(this.rootDir, id).root;
    if (!fs.existsSync(root)) return false;
    try {
      await (await this.connect(id)).kill();
    } catch (err) {
      if (!(err instanceof SandboxNotFoundError)) throw err;
      // A folder without a readable record (a crash mid-way): nothing of it can run; remove it.
      await removeSandboxFolder(root);
    }
    return true;
  }

  async dropBuildCache(key: string): Promise<void> {
    const config = await this.getConfig();
    const idle = { app: '', home: '', owner: undefined, assertIdle: () => {} };
    await new LocalBuildCache(config.buildCacheDir, key, idle).drop();
  }

  async list(filter: { metadata?: Partial<SandboxMetadata> } = {}): Promise<SandboxInfo[]> {
    const wanted = Object.entries(filter.metadata ?? {}).filter(([, value]) => value !== undefined);
    const names = await fs.promises.readdir(this.rootDir).catch(() => [] as string[]);
    await this.removeAbandonedCreations(names);
    const found: SandboxInfo[] = [];
    for (const name of names.filter((n) => ID_PATTERN.test(n)).sort()) {
      const record = readRecord(sandboxPaths(this.rootDir, name).root);
      if (!record || !wanted.every(([key, value]) => record.metadata[key] === value)) continue;
      found.push({
        id: record.id,
        metadata: record.metadata as SandboxMetadata,
        startedAt: new Date(record.createdAt),
      });
    }
    return found;
  }

  /**
   * A sandbox whose creating process died (SIGKILL) before it was complete: its folder, and for an
   * isolated one its network namespace and cgroup, are removed. Nothing ran in it yet, and the
   * folder's name says which process was creating it (a live one, here or in another server, is left
   * alone). Its uid claim lapses with the folder.
   */
  private async removeAbandonedCreations(names: string[]): Promise<void> {
    for (const name of names) {
      const match = CREATING_PATTERN.exec(name);
      if (!match || processAlive(Number(match[2]))) continue;
      const id = match[1]!;
      const config = await this.getConfig();
      if (config.isolation) {
        await deleteNetns(config.isolation.tools, `cr-${id.slice('local-'.length)}`).catch(() => {});
        try {
          new SandboxCgroup(config.isolation.tools.cgroups, id).remove();
        } catch {
          // already gone, or never made
        }
      }
      await fs.promises.rm(path.join(this.rootDir, name), { recursive: true, force: true });
    }
  }

  private getConfig(): Promise<LocalConfig> {
    this.config ??= (async (): Promise<LocalConfig> => {
      const status = this.isolation();
      if (status.tools) {
        const cpus = this.options.tenantCpus ?? tenantCpuBudget();
        try {
          configureTenants(status.tools.cgroups, cpus);
        } catch (err) {
          throw new SandboxError(
            `cannot cap the sandboxes' CPU at ${cpus} CPUs in the cgroup hierarchy: ${(err as Error).message}`,
          );
        }
      }
      const isolation: IsolatedConfig | null = status.tools
        ? {
            tools: status.tools,
            uids: new UidAllocator(
              this.options.uidRange ?? DEFAULT_UID_RANGE,
              this.options.uidClaimsDir ?? DEFAULT_UID_CLAIMS_DIR,
            ),
            databasePorts: this.options.databasePorts ?? (() => []),
          }
        : null;
      return {
        runAs: isolation ? undefined : await resolveRunAs(this.options.runAsUser),
        isolation,
        killGraceMs: this.options.killGraceMs ?? DEFAULT_KILL_GRACE_MS,
        logMaxBytes: this.options.logMaxBytes ?? DEFAULT_LOG_MAX_BYTES,
        outputRate: this.options.outputRate ?? DEFAULT_OUTPUT_RATE,
        buildCacheDir: this.options.buildCacheDir ?? path.join(this.rootDir, '.build-cache'),
      };
    })();
    // A failed lookup is retried by the next call.
    this.config.catch(() => {
      this.config = undefined;
    });
    return this.config;
  }
}

/** A new sandbox's build limits: the larger of its plan's and the build's, or null when the plan's suffice. */
function buildPhase(
  limits: ResourceLimits,
  build: LocalProviderOptions['buildLimits'],
): { memoryMb: number; cpus: number } | null {
  if (!build || (build.memoryMb <= limits.memoryMb && build.cpus <= limits.cpus)) return null;
  return { memoryMb: Math.max(build.memoryMb, limits.memoryMb), cpus: Math.max(build.cpus, limits.cpus) };
}

/**
 * Create `rootDir`, and make sure the sandbox user can reach into it: a root folder under a private
 * home (mode 0700) would make every command fail with a bare EACCES.
 */
async function prepareRoot(rootDir: string, runAs: RunAs | undefined): Promise<void> {
  await fs.promises.mkdir(rootDir, { recursive: true, mode: 0o711 });
  if (!runAs) return;
  const searchable = (stat: fs.Stats) =>
    (stat.mode & 0o001) !== 0 ||
    (stat.uid === runAs.uid && (stat.mode & 0o100) !== 0) ||
    (stat.gid === runAs.gid && (stat.mode & 0o010) !== 0);
  // The sandboxes' own folder is ours to open (searchable, not listable); the folders above it are not.
  const rootStat = await fs.promises.stat(rootDir);
  if (!searchable(rootStat)) await fs.promises.chmod(rootDir, (rootStat.mode & 0o777) | 0o111);
  for (let dir = path.dirname(rootDir); ; dir = path.dirname(dir)) {
    if (!searchable(await fs.promises.stat(dir))) {
      throw new SandboxError(
        `the sandbox user ${runAs.name} cannot reach ${rootDir}, because ${dir} is closed to it: ` +
          `allow it with \`chmod o+x ${dir}\`, or keep the sandboxes in another folder`,
      );
    }
    if (dir === path.dirname(dir)) return;
  }
}
