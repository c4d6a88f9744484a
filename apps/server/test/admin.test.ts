import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { User } from '@coderunner/db';
import { createMigratedTestDatabase, type MigratedTestDatabase } from '@coderunner/db/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/cli/admin.ts');

let db: MigratedTestDatabase;
beforeAll(async () => {
  db = await createMigratedTestDatabase();
  await User.create({ email: 'ops@example.com', passwordHash: 'x' });
});
afterAll(() => db.close());

const admin = (...args: string[]) =>
  run(process.execPath, ['--import', 'tsx', script, ...args], {
    env: { ...process.env, DATABASE_URL: db.url },
  }).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e) => ({ code: e.code as number, out: e.stdout as string, err: e.stderr as string }),
  );

describe('admin set-plan', () => {
  it('changes a user plan (email in any case)', async () => {
    const r = await admin('set-plan', 'OPS@example.com', 'team');
    expect(r).toMatchObject({ code: 0, out: 'ops@example.com is now on the team plan\n' });
    expect((await User.findOne({ where: { email: 'ops@example.com' } }))!.planType).toBe('team');
  });

  it('refuses an unknown plan (exit 2) and an unknown email (exit 1)', async () => {
    expect(await admin('set-plan', 'ops@example.com', 'gold')).toMatchObject({
      code: 2,
      err: expect.stringContaining('unknown plan "gold": use one of free, personal, team'),
    });
    expect(await admin('set-plan', 'ghost@example.com', 'team')).toMatchObject({
      code: 1,
      err: expect.stringContaining('no user with email ghost@example.com'),
    });
    expect((await admin()).code).toBe(2);
  });
});
