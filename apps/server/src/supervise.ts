import type { EmbeddedPostgres } from '@coderunner/db';
import type { Logger } from './logger';

/**
 * Keeps the control plane's embedded PostgreSQL up while this process runs: when its postmaster dies
 * it is started again (or, when another process brought it back first, attached to) within about a
 * second. Meanwhile queries fail and /readyz answers 503; the pool reconnects by itself afterwards.
 */
export function superviseEmbedded(cluster: EmbeddedPostgres, logger: Logger): () => void {
  return cluster.supervise({
    intervalMs: 1000,
    onEvent: (e) => {
      if (e.kind === 'down')
        logger.error({ port: cluster.port }, 'embedded PostgreSQL is down: starting it again');
      else if (e.kind === 'up')
        logger.info({ port: cluster.port, mode: e.mode }, `embedded PostgreSQL is back (${e.mode})`);
      else logger.error({ err: e.error }, 'embedded PostgreSQL could not be started again; retrying');
    },
  });
}
