import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import {
  DeploymentEngine,
  type DeploymentServices,
  LogStore,
  SourceStore,
  STATUS_CHANNEL,
} from '@coderunner/api';
import type { Sequelize } from '@coderunner/db';
import { createLocalProvider, findFreePort, type SandboxProvider } from '@coderunner/sandbox';
import pg from 'pg';
import type { Config } from './config';
import type { Logger } from './logger';

export interface DeploymentRuntime {
  services: DeploymentServices;
  engine: DeploymentEngine;
  provider: SandboxProvider;
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
  const provider = createLocalProvider({ rootDir: path.join(dataDir, 'sandboxes') });
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
    publicUrlFor: (id) => publicUrlFor(baseUrl(), id),
    appPort: async (plan) => (provider.name === 'local' ? findFreePort() : (plan.port ?? 8080)),
    concurrency: config.WORKER_CONCURRENCY,
    installTimeoutMs: config.CODERUNNER_INSTALL_TIMEOUT_S * 1000,
    buildTimeoutMs: config.CODERUNNER_BUILD_TIMEOUT_S * 1000,
    startTimeoutMs: config.CODERUNNER_START_TIMEOUT_S * 1000,
    stuckAfterMs: config.CODERUNNER_STUCK_AFTER_S * 1000,
    maxRetries: 1,
    reconcileIntervalMs: config.CODERUNNER_RECONCILE_INTERVAL_S * 1000,
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
    maxUploadBytes: config.CODERUNNER_MAX_UPLOAD_MB * 1024 * 1024,
    maxFiles: config.CODERUNNER_MAX_FILES,
    onQueued: () => engine.poke(),
  };
  return {
    services,
    engine,
    provider,
    async start({ workers, port }) {
      if (port) listeningPort = port;
      await status.start();
      if (workers) await engine.start();
    },
    async close() {
      await engine.stop();
      await status.close();
    },
  };
}
