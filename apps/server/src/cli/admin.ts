/**
 * Operator commands: pnpm --filter @coderunner/server admin set-plan <email> <plan>
 * Reads DATABASE_URL, else the embedded database in CODERUNNER_DATA_DIR.
 */
import { users } from '@coderunner/api/tables';
import { connect, PLAN_TYPES, type PlanType, resolveDatabaseFromEnv } from '@coderunner/db';

const USAGE = `usage: admin set-plan <email> <plan>   (plans: ${PLAN_TYPES.join(', ')})`;

async function main(args: string[]): Promise<number> {
  const [command, email, plan] = args;
  if (command !== 'set-plan' || !email || !plan) {
    console.error(USAGE);
    return 2;
  }
  if (!PLAN_TYPES.includes(plan as PlanType)) {
    console.error(`unknown plan "${plan}": use one of ${PLAN_TYPES.join(', ')}`);
    return 2;
  }
  const target = await resolveDatabaseFromEnv();
  const sequelize = connect(target.url, { poolMax: 1 });
  try {
    const normalized = email.trim().toLowerCase();
    const count = await users.setPlan(normalized, plan as PlanType);
    if (!count) {
      console.error(`no user with email ${normalized}`);
      return 1;
    }
    console.log(`${normalized} is now on the ${plan} plan`);
    return 0;
  } finally {
    await sequelize.close();
    await target.embedded?.stop();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`admin failed: ${(err as Error).message}`);
    process.exit(1);
  },
);
