/**
 * Where the deployment runtime is wired: sandbox provider, database provisioner, keyring, stores,
 * engine, the status LISTEN loop and the service the router calls. The server, the worker command
 * and the tests all build it here.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { createListener, type Sequelize } from '@coderunner/db';
import {
  APPS_ADDRESS,
  agentSphereConfigFromEnv,
  createAgentSphereProvider,
  createLocalDatabaseProvisioner,
  createLocalProvider,
  DEFAULT_APPS_EMBEDDED_PORT,
  DEFAULT_LIMITS,
  findFreePort,
  type IsolationMode,
  isolationWarning,
  LOCAL_DATABASE_SANDBOX_PREFIX,
  localDatabaseOptionsFromEnv,
  NodeVersions,
  provisionAgentSphereDatabase,
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
import { createDatabaseHooks, type DatabaseBackend } from './database-hooks';
import { DeploymentEngine } from './engine';
import { parseStatusNotification, STATUS_CHANNEL } from './lifecycle';
import { LogStore } from './log-store';
import { DeploymentService } from './service';
import { SourceStore } from './source-store';
import { StaticSites } from './static-sites';
import { DEFAULT_MAX_FILES, DEFAULT_MAX_UPLOAD_MB } from './upload';

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
  /** Local provider: CPUs all sandboxes may use together (default: the host's less a reserve for the control plane). */
  tenantCpus?: number;
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
  /** Start workers (when this process runs them) and the status listener, once the HTTP port is known. */
  start(opts: { workers: boolean; port?: number }): Promise<void>;
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
  const provider = createLocalProvider({
    rootDir: path.join(dataDir, 'sandboxes'),
    isolation: config.isolation,
    uidRange: config.sandboxUids,
    tenantCpus: config.tenantCpus,
    // A deployment given a database reaches the apps' cluster (its own database there), and nothing
    // else on this machine; one without (whatever DATABASE_URL its owner set) reaches no port at all.
    databasePorts: async (metadata) =>
      (await deployments.usesDatabase(sequelize, metadata.deploymentId)) ? [appsDatabasePort] : [],
    limits: async (metadata) => {
      const row = await projects.ownerPlan(sequelize, metadata.projectId);
      const limits = config.planLimits ?? {};
      return limits[row?.plan_type ?? 'free'] ?? limits.free ?? DEFAULT_LIMITS;
    },
  });
  // CODERUNNER_ISOLATION=sandbox without what it needs: this throws, and the server does not start.
  const status = provider.isolation();
  const warning = isolationWarning(status);
  if (warning) logger.warn({}, warning);
  const appsDatabases = createLocalDatabaseProvisioner({
    ...databaseOptions,
    log: (msg) => logger.debug({ msg }, 'app databases'),
    onState: ({ state, mode, host, port, error }) => {
      const fields = { appsDatabase: state, mode, address: `${host}:${port}` };
      if (state === 'failed') logger.warn({ ...fields, error }, "the apps' database cluster cannot start");
      else if (state === 'down') logger.warn(fields, "the apps' database cluster stopped; starting it again");
      else logger.info(fields, "the apps' database cluster is up");
    },
  });
  const databases: Databases = {
    provision: (d) => appsDatabases.provision(d.id),
    // By the database's id: a project's database is named after the deployment that created it.
    destroy: (d) => appsDatabases.destroyDatabase(d.dbSandboxId),
    reset: (d) => appsDatabases.reset(d.dbSandboxId),
    // A shared cluster is checked (and warned about) at start. The embedded one starts with the
    // server, before apps are adopted or rebuilt, when a deployment holds a database on it (else
    // on first use), and is supervised from then on, whichever process started it.
    start: async () => {
      if (
        env.CODERUNNER_APPS_DATABASE_URL ||
        (await deployments.anyLiveHoldsDatabase(sequelize, LOCAL_DATABASE_SANDBOX_PREFIX))
      )
        return appsDatabases.start();
      return { warnings: [] };
    },
    stop: () => appsDatabases.stop(),
  };
  return {
    provider,
    databases,
    isolation: { mode: status.mode, missing: status.missing },
    // Isolated apps are published on APPS_ADDRESS (not the dashboard's): a port free there.
    appPort: () => findFreePort(status.mode === 'sandbox' ? APPS_ADDRESS : '127.0.0.1'),
    publicUrlFor: (id) => publicUrlFor(baseUrl(), id),
  };
}

/** Cloud apps listen on the port they ask for (8080 by default) and are reached at their sandbox's public host. */
function agentSphereSandboxes(config: RuntimeConfig): Sandboxes {
  // Throws a clear message when AGENTSPHERE_API_KEY is missing: the SDK would only fail at the first call.
  const provider = createAgentSphereProvider(agentSphereConfigFromEnv(config.env));
  const databases: Databases = {
    provision: async (d) => {
      const db = await provisionAgentSphereDatabase(provider, { deploymentId: d.id, projectId: d.projectId });
      return { sandboxId: db.sandboxId, connectionInfo: db.connectionInfo };
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
    appPort: async (plan) => plan.port ?? 8080,
    publicUrlFor: (_id, sandbox, port) => `https://${sandbox.getHost(port)}/`,
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
      ? agentSphereSandboxes(config)
      : localSandboxes(config, sequelize, logger, baseUrl);
  const { provider, databases } = sandboxes;
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
    database: createDatabaseHooks(databases, keyring),
    logger,
    listenUrl: databaseUrl,
  });
  // Status changes (from this or another replica) for `watch` subscriptions: `emit(<deployment id>)`.
  const status = createListener({
    url: databaseUrl,
    channels: {
      [STATUS_CHANNEL]: (payload) => {
        const change = parseStatusNotification(payload);
        if (!change) return;
        engine.statusChanged(change);
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
  });
  return {
    service,
    engine,
    provider,
    isolation: sandboxes.isolation,
    async start({ workers, port }) {
      if (port) listeningPort = port;
      if (databases.start) {
        const { warnings } = await databases.start();
        for (const warning of warnings) logger.warn({}, warning);
      }
      await status.start();
      if (workers) await engine.start();
    },
    async close() {
      await engine.stop();
      await logs.close();
      await status.close();
      await databases.stop?.();
    },
  };
}
