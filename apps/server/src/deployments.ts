import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import {
  createDatabaseHooks,
  type DatabaseBackend,
  DeploymentEngine,
  type DeploymentServices,
  type Keyring,
  LogStore,
  loadKeyring,
  SourceStore,
  STATUS_CHANNEL,
} from '@coderunner/api';
import { QueryTypes, type Sequelize } from '@coderunner/db';
import {
  agentSphereConfigFromEnv,
  createAgentSphereProvider,
  createLocalDatabaseProvisioner,
  createLocalProvider,
  DEFAULT_APPS_EMBEDDED_PORT,
  findFreePort,
  type IsolationStatus,
  isolationWarning,
  localDatabaseOptionsFromEnv,
  parseUidRange,
  provisionAgentSphereDatabase,
  type SandboxProvider,
} from '@coderunner/sandbox';
import pg from 'pg';
import { type Config, parseLimits } from './config';
import type { Logger } from './logger';

export interface DeploymentRuntime {
  services: DeploymentServices;
  engine: DeploymentEngine;
  provider: SandboxProvider;
  /** Tenant isolation in force: `sandbox` or `none` (the agentsphere provider isolates by itself). */
  isolation: { mode: 'sandbox' | 'none'; missing: string[] };
  /** Start workers (when this process runs them) and the status listener, once the HTTP port is known. */
  start(opts: { workers: boolean; port?: number }): Promise<void>;
  close(): Promise<void>;
}

/** `http://<deployment id>.<base host>:<base port>/`: derived from the id, so it is unique forever. */
export function publicUrlFor(baseUrl: string, deploymentId: string): string {
  const base = new URL(baseUrl);
  base.hostname = `${deploymentId}.${base.hostname}`;
  return base.toString();
}

/** A LISTEN connection that reconnects, turning status notifications into `emitter.emit(id)`. */
function listenForStatus(url: string, emitter: EventEmitter, logger: Logger) {
  let client: pg.Client | undefined;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  const connect = async () => {
    if (closed) return;
    const c = new pg.Client({ connectionString: url, keepAlive: true });
    client = c;
    c.on('notification', (msg) => {
      const id = msg.payload?.split(':')[0];
      if (id) emitter.emit(id);
    });
    const retry = () => {
      if (closed || client !== c) return;
      client = undefined;
      c.end().catch(() => {});
      timer = setTimeout(() => void connect(), 1_000);
    };
    c.on('error', retry);
    c.on('end', retry);
    try {
      await c.connect();
      await c.query(`LISTEN ${STATUS_CHANNEL}`);
    } catch (err) {
      logger.debug({ err }, 'status LISTEN connection failed; retrying');
      retry();
    }
  };
  return {
    start: connect,
    async close() {
      closed = true;
      clearTimeout(timer);
      await client?.end().catch(() => {});
    },
  };
}

export function createDeploymentRuntime(
  config: Config,
  sequelize: Sequelize,
  databaseUrl: string,
  logger: Logger,
): DeploymentRuntime {
  const dataDir = config.dataDir;
  const workDir = path.join(dataDir, 'work');
  fs.mkdirSync(workDir, { recursive: true, mode: 0o700 });
  const env = config.env;
  let provider: SandboxProvider;
  let isolationStatus: Pick<IsolationStatus, 'mode' | 'missing'> = { mode: 'none', missing: [] };
  let databases: DatabaseBackend & { start?(): Promise<{ warnings: string[] }>; stop?(): Promise<void> };
  if (config.SANDBOX_PROVIDER === 'agentsphere') {
    // Throws a clear message when AGENTSPHERE_API_KEY is missing: the SDK would only fail at the first call.
    const agentsphere = agentSphereConfigFromEnv(env);
    // Each sandbox is a machine of its own there.
    isolationStatus = { mode: 'sandbox', missing: [] };
    provider = createAgentSphereProvider(agentsphere);
    databases = {
      provision: async (d) => {
        const db = await provisionAgentSphereDatabase(provider, {
          deploymentId: d.id,
          projectId: d.projectId,
        });
        return { sandboxId: db.sandboxId, connectionInfo: db.connectionInfo };
      },
      destroy: async (d) => {
        await provider.kill(d.dbSandboxId);
      },
    };
  } else {
    const databaseOptions = localDatabaseOptionsFromEnv(env, dataDir);
    const appsDatabasePort = databaseOptions.adminUrl
      ? Number(new URL(databaseOptions.adminUrl).port || 5432)
      : (databaseOptions.embeddedPort ?? DEFAULT_APPS_EMBEDDED_PORT);
    const planLimits: Record<string, ReturnType<typeof parseLimits>> = {
      free: parseLimits(config.CODERUNNER_LIMITS_FREE),
      personal: parseLimits(config.CODERUNNER_LIMITS_PERSONAL),
      team: parseLimits(config.CODERUNNER_LIMITS_TEAM),
    };
    const local = createLocalProvider({
      rootDir: path.join(dataDir, 'sandboxes'),
      isolation: config.CODERUNNER_ISOLATION,
      uidRange: parseUidRange(config.CODERUNNER_SANDBOX_UIDS),
      // A deployment given a database reaches the apps' cluster (its own database there), and nothing
      // else on this machine; one without (whatever DATABASE_URL its owner set) reaches no port at all.
      databasePorts: async (metadata) => {
        const [row] = await sequelize.query<{ db: string | null }>(
          'SELECT db_sandbox_id AS db FROM deployments WHERE id = :id',
          { type: QueryTypes.SELECT, replacements: { id: metadata.deploymentId } },
        );
        return row?.db ? [appsDatabasePort] : [];
      },
      limits: async (metadata) => {
        const [row] = await sequelize.query<{ plan_type: string }>(
          'SELECT u.plan_type FROM projects p JOIN users u ON u.id = p.user_id WHERE p.id = :id',
          { type: QueryTypes.SELECT, replacements: { id: metadata.projectId } },
        );
        return planLimits[row?.plan_type ?? 'free'] ?? planLimits.free!;
      },
    });
    // CODERUNNER_ISOLATION=sandbox without what it needs: this throws, and the server does not start.
    const status = local.isolation();
    isolationStatus = status;
    const warning = isolationWarning(status);
    if (warning) logger.warn(warning);
    provider = local;
    const appsDatabases = createLocalDatabaseProvisioner({
      ...databaseOptions,
      log: (msg) => logger.debug({ msg }, 'app databases'),
    });
    databases = {
      provision: (d) => appsDatabases.provision(d.id),
      destroy: (d) => appsDatabases.destroy(d.id),
      // A shared cluster is checked (and warned about) at start; the embedded one starts on first use.
      start: env.CODERUNNER_APPS_DATABASE_URL ? () => appsDatabases.start() : undefined,
      stop: () => appsDatabases.stop(),
    };
  }
  const keyring: Keyring = loadKeyring({ env, dataDir });
  const logs = new LogStore(path.join(dataDir, 'logs'));
  const sources = new SourceStore(path.join(dataDir, 'sources'));
  const events = new EventEmitter();
  events.setMaxListeners(0);
  // Until the server listens (PORT=0 picks a port), the default base is not known.
  let listeningPort = config.PORT;
  const baseUrl = () => config.CODERUNNER_APPS_BASE_URL ?? `http://localhost:${listeningPort}`;

  const engine = new DeploymentEngine({
    sequelize,
    provider,
    logs,
    sources,
    workDir,
    publicUrlFor: (id, sandbox, port) =>
      provider.name === 'local' ? publicUrlFor(baseUrl(), id) : `https://${sandbox.getHost(port)}/`,
    appPort: async (plan) => (provider.name === 'local' ? findFreePort() : (plan.port ?? 8080)),
    concurrency: config.WORKER_CONCURRENCY,
    installTimeoutMs: config.CODERUNNER_INSTALL_TIMEOUT_S * 1000,
    buildTimeoutMs: config.CODERUNNER_BUILD_TIMEOUT_S * 1000,
    startTimeoutMs: config.CODERUNNER_START_TIMEOUT_S * 1000,
    stuckAfterMs: config.CODERUNNER_STUCK_AFTER_S * 1000,
    maxRetries: 1,
    reconcileIntervalMs: config.CODERUNNER_RECONCILE_INTERVAL_S * 1000,
    database: createDatabaseHooks(databases, keyring),
    logger,
    listen: async () => {
      const c = new pg.Client({ connectionString: databaseUrl, keepAlive: true });
      await c.connect();
      return c;
    },
  });
  const status = listenForStatus(databaseUrl, events, logger);
  const services: DeploymentServices = {
    engine,
    sources,
    logs,
    events,
    keyring,
    maxUploadBytes: config.CODERUNNER_MAX_UPLOAD_MB * 1024 * 1024,
    maxFiles: config.CODERUNNER_MAX_FILES,
    onQueued: () => engine.poke(),
  };
  return {
    services,
    engine,
    provider,
    isolation: { mode: isolationStatus.mode, missing: isolationStatus.missing },
    async start({ workers, port }) {
      if (port) listeningPort = port;
      if (databases.start) {
        const { warnings } = await databases.start();
        for (const warning of warnings) logger.warn(warning);
      }
      await status.start();
      if (workers) await engine.start();
    },
    async close() {
      await engine.stop();
      await status.close();
      await databases.stop?.();
    },
  };
}
