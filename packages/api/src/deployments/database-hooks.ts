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

/**
 * Why this server cannot give an app a database, or undefined when it can. AgentSphere's ingress (like
 * E2B's) is an HTTP(S) reverse proxy: PostgreSQL's wire protocol cannot pass it, so a database sandbox
 * there would come with a DATABASE_URL no app can connect to. Refused at deploy time instead.
 */
export function databaseRefusal(provider: { name: string }): string | undefined {
  if (provider.name !== 'agentsphere') return undefined;
  return (
    "databases are not available on this server's sandbox provider (AgentSphere): its ingress carries " +
    "only HTTP(S), so PostgreSQL's protocol cannot reach a database sandbox. Deploy without --database " +
    'and point the app at a hosted PostgreSQL (`coderunner env set DATABASE_URL=… -p <project>`), or ' +
    'use a CodeRunner server with SANDBOX_PROVIDER=local'
  );
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
