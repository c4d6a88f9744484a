/**
 * Where the deployment runtime is wired: sandbox provider, database provisioner, keyring, stores,
 * engine, the status LISTEN loop and the service the router calls. The server, the worker command
 * and the tests all build it here.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { createListener, QueryTypes, type Sequelize } from '@coderunner/db';
import {
  APPS_ADDRESS,
  agentSphereConfigFromEnv,
  BuildSlots,
  createAgentSphereProvider,
  createLocalDatabaseProvisioner,
  createLocalProvider,
  createProjectClusters,
  DEFAULT_APPS_EMBEDDED_PORT,
  DEFAULT_LIMITS,
  detectIsolation,
  findFreePort,
  type IsolationMode,
  isolationWarning,
  isProjectDatabaseSandboxId,
  LOCAL_DATABASE_SANDBOX_PREFIX,
  localDatabaseOptionsFromEnv,
  NodeVersions,
  PROJECT_DATABASE_SANDBOX_PREFIX,
  type ResourceLimits,
  resetAgentSphereDatabase,
  type SandboxProvider,
  type UidRange,
} from '@coderunner/sandbox';
import { ProjectEnvStore } from '../env-store';
import { type Keyring, loadKeyring } from '../secrets';
import * as deployments from '../tables/deployments';
import * as projects from '../tables/projects';
import type { EngineLogger, EngineOptions } from './context';
import { type ClusterOf, DatabaseBackups } from './database-backups';
import { createDatabaseHooks, type DatabaseBackend, databaseRefusal } from './database-hooks';
import { DeploymentEngine } from './engine';
import { parseStatusNotification, STATUS_CHANNEL } from './lifecycle';
import { LogStore } from './log-store';
import { DeploymentService, type DeploymentServiceDeps } from './service';
import { SourceStore } from './source-store';
import { StaticSites } from './static-sites';
import { DEFAULT_MAX_FILES, DEFAULT_MAX_UPLOAD_MB } from './upload';
import { UsageSampler } from './usage';

export interface RuntimeConfig {
  /** The server's data folder: sandboxes, sources, logs, keys. */
  dataDir: string;
  /** The environment (provider settings, keys, apps' database cluster). */
  env: NodeJS.ProcessEnv;
  provider: 'local' | 'agentsphere';
  /** Base of the local provider's public URLs; default `http://localhost:<the server's port>`. */
  appsBaseUrl?: string;
  /** The server's HTTP port, when known before `start()`. */
  port?: number;
  maxUploadMb?: number;
  maxFiles?: number;
  /** Local provider: CODERUNNER_ISOLATION (default `auto`). */
  isolation?: IsolationMode;
  /** Local provider: the uids handed to isolated sandboxes (CODERUNNER_SANDBOX_UIDS). */
  sandboxUids?: UidRange;
  /** Local provider: a sandbox's limits by its owner's plan (CODERUNNER_LIMITS_*); unknown plans get the free plan's. */
  planLimits?: Partial<Record<string, ResourceLimits>>;
  /**
   * Local provider: memory and CPUs of installs and builds (when more than the plan's), and the
   * machine's build queue (`slots` builds at once, shared through `dir` by every server here).
   */
  builds?: {
    limits: { memoryMb: number; cpus: number };
    slots: number;
    slotsDir: string;
  };
  /** A project's build time limit and build cache cap by its owner's plan; unknown plans get the free plan's. */
  planBuild?: Partial<Record<string, { timeLimitMs: number; cacheMb: number }>>;
  /** Local provider: CPUs all sandboxes may use together (default: the host's less a reserve for the control plane). */
  tenantCpus?: number;
  /** Backups of a project's own database kept per project, by the owner's plan (default free 3, personal 7, team 30). */
  backupsKept?: Record<'free' | 'personal' | 'team', number>;
  /**
   * The Node.js apps run on: `registry` (default) fetches what they ask for, else the newest LTS,
   * into `cacheDir` (default `<dataDir>/node`); `host` gives every app the host's Node.
   */
  nodeVersions?: { mode?: 'registry' | 'host'; cacheDir?: string | undefined; registry?: string };
  /** Engine settings; defaults as in the README's configuration table. */
  engine?: Partial<
    Pick<
      EngineOptions,
      | 'concurrency'
      | 'installTimeoutMs'
      | 'buildTimeoutMs'
      | 'startTimeoutMs'
      | 'stuckAfterMs'
      | 'maxRetries'
      | 'reconcileIntervalMs'
      | 'orphanGraceMs'
      | 'redeployDrainMs'
      | 'restarts'
    >
  >;
}

/** Tenant isolation in force: `sandbox` or `none`, and what is missing for it (AgentSphere isolates by itself). */
export interface IsolationReport {
  mode: 'sandbox' | 'none';
  missing: string[];
}

export interface DeploymentRuntime {
  service: DeploymentService;
  engine: DeploymentEngine;
  provider: SandboxProvider;
  isolation: IsolationReport;
  /** What running apps use (null: the provider's sandboxes are not on this host). */
  usage: UsageSampler | null;
  /** Backups of projects' own databases (null: this provider's databases have none). */
  backups: DatabaseBackups | null;
  /**
   * Start workers (when this process runs them), the status listener and, unless `usage` is false
   * (a process that answers no API calls), the usage sampler, once the HTTP port is known.
   */
  start(opts: { workers: boolean; port?: number; usage?: boolean }): Promise<void>;
  close(): Promise<void>;
}

/**
 * `http://<label>.<base host>:<base port>/`: a deployment's URL (label: its id) or a project's (its
 * slug); both derived from an id, so unique forever.
 */
export function publicUrlFor(baseUrl: string, label: string): string {
  const base = new URL(baseUrl);
  base.hostname = `${label}.${base.hostname}`;
  return base.toString();
}

/** `http://localhost:8080/` → the text before and after a label put in front of the host. */
function urlAround(baseUrl: string): { before: string; after: string } {
  const marker = 'x-label-x';
  const url = publicUrlFor(baseUrl, marker);
  const at = url.indexOf(marker);
  return { before: url.slice(0, at), after: url.slice(at + marker.length) };
}

type Databases = DatabaseBackend & { start?(): Promise<{ warnings: string[] }>; stop?(): Promise<void> };

/** What differs between providers, wired once: the provider, its databases, where its apps listen and are reached. */
interface Sandboxes {
  provider: SandboxProvider;
  databases: Databases;
  isolation: IsolationReport;
  appPort: EngineOptions['appPort'];
  publicUrlFor: EngineOptions['publicUrlFor'];
  /** A project's own database cluster, for its backups (undefined: the project has none). */
  clusterOf?: ClusterOf;
  /** Where the project's database runs, its size and limits. */
  databaseOf(projectId: string): ReturnType<NonNullable<DeploymentServiceDeps['databaseOf']>>;
}

/** Local apps listen on a free port of this machine and are reached through the server's proxy. */
function localSandboxes(
  config: RuntimeConfig,
  sequelize: Sequelize,
  logger: EngineLogger,
  baseUrl: () => string,
): Sandboxes {
  const { env, dataDir } = config;
  const databaseOptions = localDatabaseOptionsFromEnv(env, dataDir);
  const appsDatabasePort = databaseOptions.adminUrl
    ? Number(new URL(databaseOptions.adminUrl).port || 5432)
    : (databaseOptions.embeddedPort ?? DEFAULT_APPS_EMBEDDED_PORT);
  const planLimits = async (projectId: string) => {
    const row = await projects.ownerPlan(sequelize, projectId);
    const limits = config.planLimits ?? {};
    return limits[row?.plan_type ?? 'free'] ?? limits.free ?? DEFAULT_LIMITS;
  };
  // Set below; the provider asks for a sandbox's database ports only once sandboxes run.
  let projectClusters: ReturnType<typeof createProjectClusters> | undefined;
  let appsDatabases: ReturnType<typeof createLocalDatabaseProvisioner> | undefined;
  const provider = createLocalProvider({
    rootDir: path.join(dataDir, 'sandboxes'),
    isolation: config.isolation,
    uidRange: config.sandboxUids,
    tenantCpus: config.tenantCpus,
    // A deployment given a database reaches its project's database (its own cluster, or its database
    // on the apps' shared cluster), and nothing else on this machine; one without (whatever
    // DATABASE_URL its owner set) reaches no port at all. The database is started when it is not
    // running yet (a project whose deployments were all stopped when this server started).
    databasePorts: async (metadata) => {
      if (!(await deployments.usesDatabase(sequelize, metadata.deploymentId))) return [];
      const held = await deployments.databasesOfProject(sequelize, metadata.projectId);
      const ports = new Set<number>();
      for (const { dbSandboxId } of held) {
        if (isProjectDatabaseSandboxId(dbSandboxId) && projectClusters) {
          const port = projectClusters.portOf(dbSandboxId);
          if (port === undefined) continue;
          await projectClusters.clusterOf(dbSandboxId).catch(() => {}); // failures are logged
          ports.add(port);
        } else if (dbSandboxId.startsWith(LOCAL_DATABASE_SANDBOX_PREFIX)) {
          await appsDatabases?.start().catch(() => {});
          ports.add(appsDatabasePort);
        }
      }
      // The operator's cluster (CODERUNNER_APPS_DATABASE_URL) holds every database provisioned now.
      if (databaseOptions.adminUrl) ports.add(appsDatabasePort);
      return [...ports];
    },
    buildLimits: config.builds?.limits,
    limits: (metadata) => planLimits(metadata.projectId),
  });
  // CODERUNNER_ISOLATION=sandbox without what it needs: this throws, and the server does not start.
  const status = provider.isolation();
  const warning = isolationWarning(status);
  if (warning) logger.warn({}, warning);
  // One cluster per project (CODERUNNER_APPS_DATABASE_URL unset): sandboxed as apps are when they are.
  projectClusters = createProjectClusters({
    dataDir,
    tools: status.mode === 'sandbox' ? detectIsolation(status.requested).tools : null,
    uidRange: config.sandboxUids,
    tenantCpus: config.tenantCpus,
    limits: planLimits,
    log: (msg) => logger.debug({ msg }, 'project databases'),
    onState: ({ state, sandboxId, projectId, port, mode, error, sizeMb, capMb }) => {
      const fields = {
        projectDatabase: state,
        dbSandboxId: sandboxId,
        projectId,
        address: `127.0.0.1:${port}`,
        ...(mode ? { mode } : {}),
        ...(sizeMb !== undefined ? { sizeMb, capMb } : {}),
      };
      if (state === 'failed') logger.warn({ ...fields, error }, "a project's database cannot start");
      else if (state === 'down') logger.warn(fields, "a project's database stopped; starting it again");
      else if (state === 'read-only')
        logger.warn(
          fields,
          "a project's database is over its disk cap: it accepts no writes until it is back under",
        );
      else if (state === 'no-login')
        logger.warn(
          fields,
          "a project's database went on growing past its disk cap: its app role may not log in",
        );
      else if (state === 'writable')
        logger.info(fields, "a project's database is under its disk cap again: writes accepted");
      else if (state === 'stopped') logger.info(fields, "a project's database was removed");
      else logger.info(fields, "a project's database is up");
    },
  });
  appsDatabases = createLocalDatabaseProvisioner({
    ...databaseOptions,
    log: (msg) => logger.debug({ msg }, 'app databases'),
    onState: ({ state, mode, host, port, error }) => {
      const fields = { appsDatabase: state, mode, address: `${host}:${port}` };
      if (state === 'failed') logger.warn({ ...fields, error }, "the apps' database cluster cannot start");
      else if (state === 'down') logger.warn(fields, "the apps' database cluster stopped; starting it again");
      else logger.info(fields, "the apps' database cluster is up");
    },
  });
  const shared = appsDatabases;
  const clusters = projectClusters;
  // CODERUNNER_APPS_DATABASES=shared: new databases on the shared cluster, as before per-project clusters.
  const mode = env.CODERUNNER_APPS_DATABASES || 'project';
  if (mode !== 'project' && mode !== 'shared') {
    throw new Error(`CODERUNNER_APPS_DATABASES must be "project" or "shared" (got "${mode.slice(0, 40)}")`);
  }
  const onShared = Boolean(databaseOptions.adminUrl) || mode === 'shared';
  const databases: Databases = {
    // A project's own cluster; on the operator's cluster (CODERUNNER_APPS_DATABASE_URL) a database there.
    provision: (d) => (onShared ? shared.provision(d.id) : clusters.provision(d.projectId)),
    // By the database's id: the shared cluster's (`localdb-…`, named after the deployment that
    // created it) keep serving until destroyed; a project's own (`localpg-…`) goes with its folder.
    destroy: (d) =>
      isProjectDatabaseSandboxId(d.dbSandboxId)
        ? clusters.destroy(d.dbSandboxId)
        : shared.destroyDatabase(d.dbSandboxId),
    reset: (d) =>
      isProjectDatabaseSandboxId(d.dbSandboxId) ? clusters.reset(d.dbSandboxId) : shared.reset(d.dbSandboxId),
    // A shared cluster is checked (and warned about) at start. The embedded one starts with the
    // server, before apps are adopted or rebuilt, when a deployment holds a database on it (else
    // on first use), and is supervised from then on, whichever process started it.
    // Every project cluster a live deployment uses starts here too, also before apps are followed.
    start: async () => {
      await clusters.startAll(await deployments.liveDatabaseIds(sequelize, PROJECT_DATABASE_SANDBOX_PREFIX));
      if (
        env.CODERUNNER_APPS_DATABASE_URL ||
        (await deployments.anyLiveHoldsDatabase(sequelize, LOCAL_DATABASE_SANDBOX_PREFIX))
      )
        return shared.start();
      return { warnings: [] };
    },
    // Project clusters run on, as apps do (the next server adopts and supervises them); the shared
    // cluster stops, as before.
    stop: async () => {
      await clusters.close();
      await shared.stop();
    },
  };
  return {
    provider,
    databases,
    isolation: { mode: status.mode, missing: status.missing },
    // Isolated apps are published on APPS_ADDRESS (not the dashboard's): a port free there.
    appPort: () => findFreePort(status.mode === 'sandbox' ? APPS_ADDRESS : '127.0.0.1'),
    publicUrlFor: (id) => publicUrlFor(baseUrl(), id),
    databaseOf: async (projectId) => {
      const held = await deployments.projectDatabase(sequelize, projectId);
      if (!held) return null;
      if (!isProjectDatabaseSandboxId(held.dbSandboxId)) {
        return { kind: 'shared', deploymentId: held.id, sizeBytes: null, limits: null };
      }
      const limits = await planLimits(projectId);
      return {
        kind: 'own',
        deploymentId: held.id,
        sizeBytes: await clusters.sizeOf(held.dbSandboxId).catch(() => null),
        limits: { memoryMb: limits.memoryMb, cpus: limits.cpus, diskMb: limits.diskMb },
      };
    },
    // Backups are physical copies of a whole cluster: only a project's own cluster has them (not a
    // database on the shared cluster, nor on the operator's).
    clusterOf: async (projectId) => {
      const held = await deployments.projectDatabase(sequelize, projectId);
      if (!held || !isProjectDatabaseSandboxId(held.dbSandboxId)) return undefined;
      const c = await clusters.clusterOf(held.dbSandboxId);
      return {
        dataDir: c.dataDir,
        superuserUrl: c.superuserUrl,
        stop: () => c.stop(),
        start: () => c.start(),
      };
    },
  };
}

/**
 * Cloud apps listen on the port they ask for (8080 by default). Their public URL is CodeRunner's own
 * (`<id>.<apps base>`, as for local apps), served by the proxy from the sandbox's host: a sandbox's host
 * changes when the deployment moves to a new sandbox (the service's maximum lifetime), and a
 * deployment's public URL never changes once given.
 */
function agentSphereSandboxes(config: RuntimeConfig, baseUrl: () => string, sequelize: Sequelize): Sandboxes {
  // Throws a clear message when AGENTSPHERE_API_KEY is missing: the SDK would only fail at the first call.
  const provider = createAgentSphereProvider(agentSphereConfigFromEnv(config.env));
  const databases: Databases = {
    // Refused at deploy time (see databaseRefusal): a database sandbox here cannot be reached by
    // PostgreSQL's protocol. Existing ones are kept alive (reconciler) and dropped with their project.
    provision: async () => {
      throw new Error(databaseRefusal(provider) ?? 'databases are not available on AgentSphere');
    },
    destroy: async (d) => {
      await provider.kill(d.dbSandboxId);
    },
    reset: (d) => resetAgentSphereDatabase(provider, d.dbSandboxId, d.connectionInfo.database),
  };
  return {
    provider,
    databases,
    // Each sandbox is a machine of its own there.
    isolation: { mode: 'sandbox', missing: [] },
    databaseOf: async (projectId) => {
      const held = await deployments.projectDatabase(sequelize, projectId);
      return held ? { kind: 'cloud', deploymentId: held.id, sizeBytes: null, limits: null } : null;
    },
    appPort: async (plan) => plan.port ?? 8080,
    publicUrlFor: (id) => publicUrlFor(baseUrl(), id),
  };
}

export function createDeploymentRuntime(opts: {
  config: RuntimeConfig;
  sequelize: Sequelize;
  /** The control plane's database URL, for the LISTEN connections. */
  databaseUrl: string;
  logger: EngineLogger;
  logError?: (err: unknown, meta: { requestId?: string; path?: string }) => void;
}): DeploymentRuntime {
  const { config, sequelize, databaseUrl, logger } = opts;
  const { dataDir } = config;
  const workDir = path.join(dataDir, 'work');
  fs.mkdirSync(workDir, { recursive: true, mode: 0o700 });
  // Until the server listens (PORT=0 picks a port), the default base is not known.
  let listeningPort = config.port;
  const baseUrl = () => config.appsBaseUrl ?? `http://localhost:${listeningPort}`;
  // The project URL's parts around the slug, worked out once per base (projects.list builds a page of them).
  let projectBase = { of: '', before: '', after: '' };
  const sandboxes =
    config.provider === 'agentsphere'
      ? agentSphereSandboxes(config, baseUrl, sequelize)
      : localSandboxes(config, sequelize, logger, baseUrl);
  const { provider, databases } = sandboxes;
  const backups = sandboxes.clusterOf
    ? new DatabaseBackups({
        dataDir,
        clusterOf: sandboxes.clusterOf,
        sequelize,
        ...(config.backupsKept ? { kept: config.backupsKept } : {}),
      })
    : null;
  // Key ids only: a change of the key file is worth a line, and a refused one an error.
  const keyring: Keyring = loadKeyring({
    env: config.env,
    dataDir,
    onChange: (change) =>
      change.kind === 'reloaded'
        ? logger.info(
            { activeKid: change.activeKid, kids: change.kids },
            `encryption keys reloaded from ${change.source}: "${change.activeKid}" encrypts`,
          )
        : logger.error({}, `encryption keys: ${change.reason}`),
  });
  const logs = new LogStore(path.join(dataDir, 'logs'));
  const sources = new SourceStore(path.join(dataDir, 'sources'), keyring);
  const projectEnv = new ProjectEnvStore(path.join(dataDir, 'env'), keyring);
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const engine = new DeploymentEngine({
    sequelize,
    provider,
    logs,
    sources,
    workDir,
    staticSites: new StaticSites(path.join(dataDir, 'static')),
    nodeVersions: new NodeVersions({
      mode: config.nodeVersions?.mode,
      cacheDir: config.nodeVersions?.cacheDir ?? path.join(dataDir, 'node'),
      registry: config.nodeVersions?.registry,
    }),
    publicUrlFor: sandboxes.publicUrlFor,
    // Project URLs are served by this server's proxy on every provider.
    projectUrlFor: (slug) => {
      const base = baseUrl();
      if (base !== projectBase.of) projectBase = { of: base, ...urlAround(base) };
      return `${projectBase.before}${slug}${projectBase.after}`;
    },
    appPort: sandboxes.appPort,
    concurrency: 2,
    installTimeoutMs: 600_000,
    buildTimeoutMs: 600_000,
    startTimeoutMs: 30_000,
    stuckAfterMs: 60_000,
    maxRetries: 1,
    reconcileIntervalMs: 15_000,
    redeployDrainMs: 30_000,
    ...config.engine,
    database: createDatabaseHooks(databases, keyring, backups),
    ...(config.provider === 'local' && config.builds
      ? { buildQueue: new BuildSlots(config.builds.slotsDir, config.builds.slots) }
      : {}),
    ...(config.planBuild
      ? {
          buildPolicy: async (projectId: string) => {
            const plan = (await projects.ownerPlan(sequelize, projectId))?.plan_type ?? 'free';
            const byPlan = config.planBuild ?? {};
            const chosen = byPlan[plan] ?? byPlan.free;
            return { plan, timeLimitMs: chosen?.timeLimitMs ?? 600_000, cacheMb: chosen?.cacheMb ?? 1024 };
          },
        }
      : {}),
    logger,
    listenUrl: databaseUrl,
  });
  // Apps on this host are sampled every 10 s; a cloud provider's are not (each read is a request).
  const usage = provider.sandboxesOnThisHost
    ? new UsageSampler({
        provider,
        running: () => deployments.runningSandboxes(sequelize),
        onError: (err) => logger.warn({ err }, 'cannot sample what the apps use'),
      })
    : null;
  // Status changes (from this or another replica) for `watch` subscriptions: `emit(<deployment id>)`.
  const status = createListener({
    url: databaseUrl,
    channels: {
      [STATUS_CHANNEL]: (payload) => {
        const change = parseStatusNotification(payload);
        if (!change) return;
        engine.statusChanged(change);
        if (change.status !== 'RUNNING') usage?.drop(change.id);
        events.emit(change.id, change);
      },
    },
    onError: (err, wasConnected) => {
      if (wasConnected) logger.warn({ err }, 'lost the status LISTEN connection; reconnecting');
      else logger.debug({ err }, 'status LISTEN connection failed; retrying');
    },
  });
  const service = new DeploymentService({
    sequelize,
    engine,
    sources,
    logs,
    events,
    keyring,
    projectEnv,
    limits: {
      maxUploadBytes: (config.maxUploadMb ?? DEFAULT_MAX_UPLOAD_MB) * 1024 * 1024,
      maxFiles: config.maxFiles ?? DEFAULT_MAX_FILES,
    },
    logError: opts.logError,
    usage,
    backups,
    databaseOf: sandboxes.databaseOf,
  });
  const daily = backups ? dailyBackups(backups, sequelize, logger) : null;
  return {
    service,
    engine,
    provider,
    usage,
    backups,
    isolation: sandboxes.isolation,
    async start({ workers, port, usage: sampling = true }) {
      if (port) listeningPort = port;
      if (databases.start) {
        const { warnings } = await databases.start();
        for (const warning of warnings) logger.warn({}, warning);
      }
      await status.start();
      if (workers) await engine.start();
      if (sampling) usage?.start();
      if (workers) daily?.start();
    },
    async close() {
      await daily?.stop();
      await usage?.stop();
      await engine.stop();
      await logs.close();
      await status.close();
      await databases.stop?.();
    },
  };
}

/** How long the backups of a deleted project's database are kept (for the operator: the API no longer shows them). */
export const DELETED_PROJECT_BACKUPS_DAYS = 7;

/** Removes the backups of projects deleted more than DELETED_PROJECT_BACKUPS_DAYS ago (by their newest backup). */
export async function sweepDeletedProjects(
  backups: DatabaseBackups,
  sequelize: Sequelize,
  logger: EngineLogger,
  now = Date.now(),
): Promise<string[]> {
  const ids = backups.projectIds();
  if (!ids.length) return [];
  const alive = new Set(
    (
      await sequelize.query<{ id: string }>('SELECT id FROM projects WHERE id = ANY(:ids::uuid[])', {
        type: QueryTypes.SELECT,
        replacements: { ids: `{${ids.join(',')}}` },
      })
    ).map((r) => r.id),
  );
  const removed: string[] = [];
  for (const id of ids) {
    if (alive.has(id)) continue;
    const newest = backups.list(id)[0];
    if (newest && now - newest.createdAt.getTime() < DELETED_PROJECT_BACKUPS_DAYS * DAY_MS) continue;
    backups.removeAll(id);
    removed.push(id);
    logger.info({ projectId: id }, "the backups of a deleted project's database were removed");
  }
  return removed;
}

/** How often the server looks for project databases whose newest backup is a day old. */
const DAILY_CHECK_MS = 60 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * A backup a day of every project database in use (a live deployment holds it): checked hourly, and
 * taken when the newest backup of any kind is a day old. Replicas check the same folder, so a second
 * one finds the first's backup (two that check at the same moment may both take one: harmless).
 */
function dailyBackups(backups: DatabaseBackups, sequelize: Sequelize, logger: EngineLogger) {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  const check = async () => {
    await sweepDeletedProjects(backups, sequelize, logger);
    for (const projectId of await deployments.projectsWithLiveDatabase(sequelize)) {
      if (!timer) return; // stopping
      const newest = backups.list(projectId)[0];
      if (newest && Date.now() - newest.createdAt.getTime() < DAY_MS) continue;
      try {
        const taken = await backups.backup(projectId, 'daily');
        logger.info(
          { projectId, backup: taken.id, sizeBytes: taken.sizeBytes },
          "a project's database was backed up (daily)",
        );
      } catch (err) {
        logger.warn(
          { projectId, err: (err as Error).message },
          "the daily backup of a project's database failed",
        );
      }
    }
  };
  const tick = () => {
    running ??= check()
      .catch((err) => logger.warn({ err }, 'cannot list the project databases to back up'))
      .finally(() => {
        running = undefined;
      });
  };
  return {
    start() {
      if (timer) return;
      timer = setInterval(tick, DAILY_CHECK_MS);
      timer.unref();
      setTimeout(() => timer && tick(), 60_000).unref(); // a minute after start: apps come first
    },
    async stop() {
      clearInterval(timer);
      timer = undefined;
      await running;
    },
  };
}
