/** The control plane's embedded PostgreSQL: `@coderunner/embedded-postgres`, with its messages naming our variables. */
import {
  type EmbeddedPostgres,
  type EmbeddedPostgresOptions,
  startEmbeddedPostgres as startCluster,
} from '@coderunner/embedded-postgres';

export { type EmbeddedPostgres, EmbeddedPostgresError } from '@coderunner/embedded-postgres';

export const CONTROL_PLANE_SETTING_NAMES = {
  port: 'CODERUNNER_EMBEDDED_PG_PORT',
  dataDir: 'CODERUNNER_DATA_DIR',
  url: 'DATABASE_URL',
} as const;

export function startEmbeddedPostgres(
  options: Omit<EmbeddedPostgresOptions, 'env'> & Partial<Pick<EmbeddedPostgresOptions, 'env'>>,
): Promise<EmbeddedPostgres> {
  return startCluster({ env: CONTROL_PLANE_SETTING_NAMES, ...options });
}
