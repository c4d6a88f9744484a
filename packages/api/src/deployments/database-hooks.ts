import type { DatabaseConnectionInfo } from '@coderunner/sandbox';
import { type Keyring, open, seal } from '../secrets';
import { DatabaseBackupError, type DatabaseBackups } from './database-backups';
import type { DatabaseHooks } from './engine';

/** What a database provider hands back: the plaintext connection info never leaves the server. */
export type ConnectionInfo = DatabaseConnectionInfo;

export interface DatabaseBackend {
  provision(d: {
    id: string;
    projectId: string;
  }): Promise<{ sandboxId: string; connectionInfo: ConnectionInfo }>;
  destroy(d: { id: string; dbSandboxId: string }): Promise<void>;
  /** Drops the database and creates it again, empty, reachable with the same connection info. */
  reset(d: { id: string; dbSandboxId: string; connectionInfo: ConnectionInfo }): Promise<void>;
}

/** The variables an app with a database receives. */
export function databaseEnv(info: ConnectionInfo): Record<string, string> {
  return {
    DATABASE_URL: info.url,
    PGHOST: info.host,
    PGPORT: String(info.port),
    PGUSER: info.user,
    PGPASSWORD: info.password,
    PGDATABASE: info.database,
  };
}

/**
 * Connection info is sealed (AES-256-GCM) before it reaches the database, with the deployment id as
 * additional data: a sealed box copied onto another row does not open.
 */
export function openConnectionInfo(keyring: Keyring, deploymentId: string, box: unknown): ConnectionInfo {
  return open<ConnectionInfo>(keyring, box, deploymentId);
}

export function createDatabaseHooks(
  backend: DatabaseBackend,
  keyring: Keyring,
  backups?: DatabaseBackups | null,
): DatabaseHooks {
  return {
    ...(backups
      ? {
          async backup(projectId: string, reason: 'release' | 'before-reset') {
            try {
              return await backups.backup(projectId, reason);
            } catch (err) {
              if (err instanceof DatabaseBackupError && err.code === 'NO_DATABASE') return undefined;
              throw err;
            }
          },
        }
      : {}),
    async provision(d) {
      const { sandboxId, connectionInfo } = await backend.provision(d);
      return {
        dbSandboxId: sandboxId,
        sealed: seal(keyring, connectionInfo, d.id) as unknown as Record<string, unknown>,
        env: databaseEnv(connectionInfo),
      };
    },
    async envFor(d) {
      return databaseEnv(openConnectionInfo(keyring, d.id, d.dbConnectionInfo));
    },
    handOver(from, to) {
      const info = openConnectionInfo(keyring, from.id, from.dbConnectionInfo);
      return seal(keyring, info, to) as unknown as Record<string, unknown>;
    },
    destroy: (d) => backend.destroy(d),
    reset: (d) =>
      backend.reset({
        id: d.id,
        dbSandboxId: d.dbSandboxId,
        connectionInfo: openConnectionInfo(keyring, d.id, d.dbConnectionInfo),
      }),
  };
}
