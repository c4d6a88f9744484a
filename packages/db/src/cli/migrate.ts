/**
 * pnpm --filter @coderunner/db migrate | migrate:down | migrate:status
 * Reads DATABASE_URL, else starts the embedded PostgreSQL in CODERUNNER_DATA_DIR (default .data/).
 */
import { connect, resolveDatabaseFromEnv } from '../connection';
import { migrateDown, migrateUp, migrationStatus } from '../migrator';

const command = process.argv[2] ?? 'up';
if (!['up', 'down', 'status'].includes(command)) {
  console.error(`unknown command "${command}": use up, down or status`);
  process.exit(2);
}

let target: Awaited<ReturnType<typeof resolveDatabaseFromEnv>> | undefined;
let exitCode = 0;
try {
  target = await resolveDatabaseFromEnv();
  const sequelize = connect(target.url, { poolMax: 2 });
  try {
    if (command === 'up') {
      const applied = await migrateUp(sequelize);
      console.log(
        applied.length ? `applied: ${applied.join(', ')}` : 'nothing to migrate: the database is up to date',
      );
    } else if (command === 'down') {
      const reverted = await migrateDown(sequelize);
      console.log(reverted ? `reverted: ${reverted}` : 'nothing to revert: no migration is applied');
    } else {
      const { executed, pending } = await migrationStatus(sequelize);
      for (const name of executed) console.log(`applied  ${name}`);
      for (const name of pending) console.log(`pending  ${name}`);
    }
  } finally {
    await sequelize.close();
  }
} catch (err) {
  console.error(`migrate ${command} failed: ${(err as Error).message}`);
  exitCode = 1;
} finally {
  await target?.embedded?.stop();
}
process.exit(exitCode);
