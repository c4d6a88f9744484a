import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type ApiDeps,
  authSecretFromDataDir,
  type ClusterOf,
  createApiDeps,
  createDeploymentRuntime,
  DatabaseBackups,
  type DeploymentRuntime,
  signupPolicy,
  UNISOLATED_OPEN_SIGNUP_VARIABLE,
} from '@coderunner/api';
import { connect, type DatabaseTarget, migrateUp, resolveDatabase } from '@coderunner/db';
import { createApp } from './app';
import { type Config, runtimeConfig } from './config';
import { DEFAULT_DASHBOARD_DIR } from './dashboard';
import type { Logger } from './logger';
import { createAppProxy } from './proxy';
import { superviseEmbedded } from './supervise';

export interface RunningServer {
  /** e.g. http://127.0.0.1:8080 */
  url: string;
  port: number;
  deps: ApiDeps;
  httpServer: http.Server;
  /** Stop accepting, let in-flight requests finish, close the pool, then stop the embedded database. */
  close(): Promise<void>;
}

export interface ServerOptions {
  /**
   * Stands another cluster in for a project's own database (its data folder, superuser URL, stop
   * and start) in its backups; absent: the runtime's per-project clusters.
   */
  clusterOf?: ClusterOf;
}

export async function startServer(
  config: Config,
  logger: Logger,
  options: ServerOptions = {},
): Promise<RunningServer> {
  if (config.SANDBOX_PROVIDER === 'local') for (const warning of config.planWarnings) logger.warn(warning);
  const target: DatabaseTarget = await resolveDatabase({
    databaseUrl: config.DATABASE_URL,
    dataDir: config.dataDir,
    embeddedPort: config.CODERUNNER_EMBEDDED_PG_PORT,
  });
  if (target.embedded) {
    logger.info(
      { dataDir: target.embedded.dataDir, port: target.embedded.port, mode: target.embedded.mode },
      `embedded PostgreSQL ${target.embedded.mode}`,
    );
    superviseEmbedded(target.embedded, logger);
  }
  const sequelize = connect(target.url);
  let httpServer: http.Server | undefined;
  let runtime: DeploymentRuntime | undefined;
  try {
    const applied = await migrateUp(sequelize, (msg) => logger.debug(msg));
    if (applied.length) logger.info({ applied }, 'migrations applied');

    const logError = (err: unknown, meta: object) => logger.error({ err, ...meta }, 'unexpected error');
    runtime = createDeploymentRuntime({
      config: runtimeConfig(config),
      sequelize,
      databaseUrl: target.url,
      logger,
      logError,
    });
    const deps = createApiDeps({
      sequelize,
      config: { ...config.api, authSecret: config.api.authSecret ?? authSecretFromDataDir(config.dataDir) },
      logError,
      deployments: runtime.service,
      // The runtime's (each project's own cluster); a test may stand another cluster in.
      databaseBackups: options.clusterOf
        ? new DatabaseBackups({
            dataDir: config.dataDir,
            clusterOf: options.clusterOf,
            sequelize,
            kept: config.backupsKept,
          })
        : (runtime.backups ?? undefined),
      system: {
        isolation: runtime.isolation.mode,
        signup: signupPolicy(runtime.isolation.mode, config[UNISOLATED_OPEN_SIGNUP_VARIABLE] !== undefined),
      },
    });
    const proxy = createAppProxy(
      {
        deployment: (id) => runtime!.engine.resolveApp(id),
        project: (key) => runtime!.engine.resolveProject(key),
        restarting: (route) => runtime!.engine.restartingIn(route),
      },
      { trustProxy: config.TRUST_PROXY },
    );
    const app = createApp({
      deps,
      logger,
      corsOrigins: config.CORS_ORIGINS,
      maxJsonBodyBytes: config.CODERUNNER_MAX_JSON_KB * 1024,
      maxUploadBytes: config.CODERUNNER_MAX_UPLOAD_MB * 1024 * 1024,
      appProxy: proxy.web,
      dashboardDir: DEFAULT_DASHBOARD_DIR,
      trustProxy: config.TRUST_PROXY,
      isolation: runtime.isolation.mode,
    });
    const server = app.listen(config.PORT, config.HOST);
    httpServer = server;
    server.on('upgrade', proxy.upgrade);
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          err.code === 'EADDRINUSE'
            ? new Error(`port ${config.PORT} on ${config.HOST} is already in use; set PORT to a free port`)
            : err,
        ),
      );
    });
    const { port } = server.address() as AddressInfo;
    await runtime.start({ workers: config.WORKER_ENABLED, port });
    const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST;
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= (async () => {
        const drained = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const force = setTimeout(() => {
          server.closeAllConnections();
          proxy.close(); // websockets, which closeAllConnections leaves open
        }, config.SHUTDOWN_TIMEOUT_MS);
        await drained;
        clearTimeout(force);
        proxy.close();
        // Builds in flight are abandoned to the reconciler; running apps keep running.
        await runtime?.close();
        await sequelize.close();
        await target.embedded?.stop();
      })();
      return closing;
    };
    return { url, port, deps, httpServer: server, close };
  } catch (err) {
    httpServer?.close();
    await runtime?.close().catch(() => {});
    await sequelize.close().catch(() => {});
    await target.embedded?.stop();
    throw err;
  }
}
