/** `pnpm start`: configuration from the environment, then serve until SIGTERM/SIGINT. */
import { loadConfigOrExit } from './config';
import { isolationNotice } from './isolation-notice';
import { createLogger, exitOnCrash, flushLogger } from './logger';
import { startServer } from './server';

const config = loadConfigOrExit();
// Before anything else: how to get isolation is the first thing a fresh machine's operator reads.
const notice = isolationNotice(config);
if (notice) process.stderr.write(`${notice.join('\n')}\n`);

const logger = createLogger(config.LOG_LEVEL);
exitOnCrash(logger, 'CodeRunner');
try {
  const server = await startServer(config, logger);
  logger.info({ url: server.url }, `CodeRunner is listening on ${server.url}`);
  let signals = 0;
  const shutdown = async (signal: string) => {
    if (++signals > 1) {
      logger.warn(`${signal} again: exiting now`);
      process.exit(1);
    }
    logger.info({ signal }, 'shutting down: draining requests');
    try {
      await server.close();
      logger.info('stopped');
      await flushLogger(logger);
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'error during shutdown');
      await flushLogger(logger);
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
} catch (err) {
  logger.fatal(`cannot start: ${(err as Error).message}`);
  await flushLogger(logger);
  process.exit(1);
}
