/**
 * pnpm --filter @coderunner/server rotate-keys
 * Re-encrypts every deployment's db_connection_info with the active key (the first of
 * CODERUNNER_ENCRYPTION_KEYS), in batches. Each row is updated only if unchanged since it was read,
 * so the command is safe to interrupt and to run again: rows already on the active key are skipped.
 */
import { loadKeyring, rotateSealedColumn, sqlSealedColumn } from '@coderunner/api';
import { defaultDataDir, resolveDatabaseFromEnv } from '@coderunner/db';
import pg from 'pg';

async function main(): Promise<number> {
  const keyring = loadKeyring({ env: process.env, dataDir: defaultDataDir() });
  const target = await resolveDatabaseFromEnv();
  const pool = new pg.Pool({ connectionString: target.url, max: 2 });
  pool.on('error', () => {}); // an idle client that drops: the next query fails and says why
  try {
    const result = await rotateSealedColumn({
      keyring,
      ...sqlSealedColumn(pool, { table: 'deployments', column: 'db_connection_info' }),
      aad: (id) => id,
      batchSize: Number(process.env.ROTATE_BATCH_SIZE ?? 100),
      onProgress: (p) => console.error(`scanned ${p.scanned}, rotated ${p.rotated}`),
    });
    console.log(
      `done: ${result.rotated} rotated to key "${keyring.activeKid}", ${result.skipped} already current, ${result.conflicts} changed meanwhile (run again)`,
    );
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
