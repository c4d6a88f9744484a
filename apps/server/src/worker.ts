/**
 * `pnpm --filter @coderunner/server worker`: a worker-only process (no HTTP). It claims deployments
 * from the same database as the API servers; with the local provider it must share their data folder.
 */
import { createDeploymentRuntime } from '@coderunner/api';
import { connect, migrateUp, resolveDatabase } from '@coderunner/db';
import { loadConfigOrExit, runtimeConfig } from './config';
import { createLogger, exitOnCrash, flushLogger } from './logger';
import { superviseEmbedded } from './supervise';

const config = loadConfigOrExit();
const logger = createLogger(config.LOG_LEVEL);
exitOnCrash(logger, 'the CodeRunner worker');
if (config.SANDBOX_PROVIDER === 'local') for (const warning of config.planWarnings) logger.warn(warning);
try {
  const target = await resolveDatabase({
    databaseUrl: config.DATABASE_URL,
    dataDir: config.dataDir,
    embeddedPort: config.CODERUNNER_EMBEDDED_PG_PORT,
  });
  if (target.embedded) {
    logger.info({ port: target.embedded.port }, `embedded PostgreSQL ${target.embedded.mode}`);
    superviseEmbedded(target.embedded, logger);
  }
  const sequelize = connect(target.url);
  await migrateUp(sequelize);
  const runtime = createDeploymentRuntime({
    config: runtimeConfig(config),
    sequelize,
    databaseUrl: target.url,
    logger,
    logError: (err, meta) => logger.error({ err, ...meta }, 'unexpected error'),
  });
  await runtime.start({ workers: true, usage: false });
  logger.info({ concurrency: config.WORKER_CONCURRENCY }, 'worker started');
  const shutdown = async () => {
    logger.info('worker stopping');
    await runtime.close();
    await sequelize.close();
    await target.embedded?.stop();
    await flushLogger(logger);
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown());
  process.on('SIGINT', () => void shutdown());
} catch (err) {
  logger.fatal(`cannot start the worker: ${(err as Error).message}`);
  await flushLogger(logger);
  process.exit(1);
}
