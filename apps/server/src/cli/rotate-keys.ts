/**
 * pnpm --filter @coderunner/server rotate-keys
 * Re-encrypts with the active key (the first of CODERUNNER_ENCRYPTION_KEYS) every secret sealed with
 * an older one:
 * - every deployment's db_connection_info, in batches; each row is updated only if unchanged since
 *   it was read;
 * - projects' environment variables (`<data dir>/env/<project>.json`), each with its project's row
 *   locked, as `env.set` does, so that no update is lost;
 * - deployments' environment snapshots (`<data dir>/sources/<deployment>.json`).
 * Files are rewritten atomically. The command is safe to interrupt and to run again: what is already
 * on the active key is skipped without being decrypted.
 */
import path from 'node:path';
import { loadKeyring, ProjectEnvStore, rotateSealedColumn, SourceStore } from '@coderunner/api';
import { deployments, projects } from '@coderunner/api/tables';
import { defaultDataDir, guardedPool, resolveDatabaseFromEnv } from '@coderunner/db';
import type pg from 'pg';

/** Projects' variable files, each rotated inside a transaction holding its project's row lock. */
async function rotateProjectEnv(pool: pg.Pool, store: ProjectEnvStore) {
  const result = { rotated: 0, skipped: 0, orphans: 0 };
  for (const id of store.projectIds()) {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      if (!(await projects.lockById(client, id))) result.orphans++;
      else {
        const outcome = store.rotate(id);
        if (outcome === 'rotated') result.rotated++;
        else result.skipped++;
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw new Error(`project ${id}'s variables: ${(err as Error).message}`, { cause: err });
    } finally {
      client.release();
    }
  }
  return result;
}

async function main(): Promise<number> {
  const dataDir = defaultDataDir();
  const keyring = loadKeyring({ env: process.env, dataDir });
  const target = await resolveDatabaseFromEnv();
  const pool = guardedPool({ connectionString: target.url, max: 2 }, (err) =>
    console.error(`rotate-keys: an idle database connection failed (${err.message}); continuing`),
  );
  try {
    const result = await rotateSealedColumn({
      keyring,
      ...deployments.sealedConnectionInfo(pool),
      aad: (id) => id,
      batchSize: Number(process.env.ROTATE_BATCH_SIZE ?? 100),
      onProgress: (p) => console.error(`scanned ${p.scanned}, rotated ${p.rotated}`),
    });
    console.log(
      `done: ${result.rotated} rotated to key "${keyring.activeKid}", ${result.skipped} already current, ${result.conflicts} changed meanwhile (run again)`,
    );
    const env = await rotateProjectEnv(pool, new ProjectEnvStore(path.join(dataDir, 'env'), keyring));
    console.log(
      `project variables: ${env.rotated} rotated, ${env.skipped} already current${env.orphans ? `, ${env.orphans} of deleted projects left as they are` : ''}`,
    );
    const snapshots = new SourceStore(path.join(dataDir, 'sources'), keyring).rotateKeys();
    console.log(`deployment variables: ${snapshots.rotated} rotated, ${snapshots.skipped} already current`);
    return result.conflicts > 0 ? 1 : 0;
  } finally {
    await pool.end();
    await target.embedded?.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`rotate-keys failed: ${(err as Error).message}`);
    process.exit(1);
  },
);
