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
 *
 * With --new-key (keys in `<data dir>/encryption-keys` only), it first generates a key and adds it
 * to the file second, waits (--settle seconds) for running servers to read it, then makes it first:
 * no replica ever writes with a key the others cannot read.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  ENCRYPTION_KEYS_ENV,
  generateKey,
  keyFilePath,
  loadKeyring,
  ProjectEnvStore,
  readKeys,
  rotateSealedColumn,
  SourceStore,
  writeKeys,
} from '@coderunner/api';
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

class UsageError extends Error {}

const USAGE = 'usage: rotate-keys [--new-key [--settle <seconds>]]';

/**
 * Adds a fresh key second, waits for running servers to read the file (on their next use of the keys
 * at the latest, or after a miss re-read on file systems whose attributes lag), then makes it first.
 */
async function addAndPromoteKey(dataDir: string, settleSeconds: number): Promise<void> {
  if (process.env[ENCRYPTION_KEYS_ENV]?.trim()) {
    throw new UsageError(
      `--new-key writes ${keyFilePath(dataDir)}, but the keys come from ${ENCRYPTION_KEYS_ENV}, which running servers read only at start: add the new key second to it on every replica and restart them, then put it first and restart them again, then run rotate-keys without --new-key`,
    );
  }
  loadKeyring({ env: process.env, dataDir }); // creates the file on a fresh data folder, checks it
  const keys = readKeys(dataDir);
  const fresh = generateKey();
  writeKeys(dataDir, [...keys, fresh]);
  console.error(
    `added key "${fresh.kid}" beside "${keys[0]!.kid}" in ${keyFilePath(dataDir)}; waiting ${settleSeconds} s for running servers to read it`,
  );
  await new Promise((r) => setTimeout(r, settleSeconds * 1000));
  const now = readKeys(dataDir);
  if (!now.some((k) => k.kid === fresh.kid)) {
    throw new Error(`${keyFilePath(dataDir)} was changed meanwhile by something else; nothing promoted`);
  }
  writeKeys(dataDir, [fresh, ...now.filter((k) => k.kid !== fresh.kid)]);
  console.error(`key "${fresh.kid}" now encrypts`);
}

async function main(): Promise<number> {
  let values: { 'new-key'?: boolean; settle?: string };
  try {
    ({ values } = parseArgs({
      options: { 'new-key': { type: 'boolean' }, settle: { type: 'string' } },
      strict: true,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${USAGE}`);
  }
  const settle = Number(values.settle ?? 5);
  if (!Number.isFinite(settle) || settle < 0 || settle > 3600) {
    throw new UsageError(`--settle takes a number of seconds from 0 to 3600\n${USAGE}`);
  }
  if (values.settle !== undefined && !values['new-key'])
    throw new UsageError(`--settle goes with --new-key\n${USAGE}`);

  const dataDir = defaultDataDir();
  if (values['new-key']) await addAndPromoteKey(dataDir, settle);
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
    const retired = keyring.kids.slice(1);
    if (result.conflicts === 0 && retired.length && keyring.source !== ENCRYPTION_KEYS_ENV) {
      console.log(
        `older keys (${retired.join(', ')}) can be removed from ${keyring.source} once a second run reports 0 rotated everywhere`,
      );
    }
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
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
