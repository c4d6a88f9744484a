/**
 * Which database errors mean "the database is unavailable, retry later" (503) rather than "a bug" (500).
 * The errors are produced for real against PostgreSQL, in the wrappings the product meets them in: a
 * backend killed under a transaction (57P01, then "not queryable" for the next statement on the same
 * connection, both as Sequelize DatabaseErrors without a SQLSTATE on the second), nothing listening
 * on the port (Sequelize ConnectionRefusedError), a client-side query timeout (pg, no SQLSTATE).
 */
import { connect } from '@coderunner/db';
import { createMigratedTestDatabase, freePort, type MigratedTestDatabase } from '@coderunner/db/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDatabaseUnavailable } from '../src/trpc';

let db: MigratedTestDatabase;
beforeAll(async () => {
  db = await createMigratedTestDatabase();
});
afterAll(() => db.drop());

async function errorOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

describe('isDatabaseUnavailable', () => {
  it('is true for a connection killed mid-transaction, and for the next statement on it', async () => {
    const sequelize = connect(db.url, { poolMax: 1 });
    try {
      const errors: Error[] = [];
      await errorOf(
        sequelize.transaction(async (transaction) => {
          errors.push(
            await errorOf(sequelize.query('SELECT pg_terminate_backend(pg_backend_pid())', { transaction })),
          );
          errors.push(await errorOf(sequelize.query('SELECT 1', { transaction })));
          throw errors[1];
        }),
      );
      expect(errors.map((e) => e.message)).toEqual([
        expect.stringMatching(/terminating connection|Connection terminated/),
        expect.stringMatching(/not queryable|Connection terminated/),
      ]);
      for (const e of errors) expect(isDatabaseUnavailable(e), e.message).toBe(true);
    } finally {
      await sequelize.close();
    }
  });

  it('is true when nothing listens on the port, and for a client-side query timeout', async () => {
    const port = await freePort();
    const refused = connect(`postgres://postgres@127.0.0.1:${port}/x`);
    const refusedError = await errorOf(refused.query('SELECT 1'));
    await refused.close();
    expect(isDatabaseUnavailable(refusedError), refusedError.message).toBe(true);

    const slow = new pg.Client({ connectionString: db.url, query_timeout: 50 });
    slow.on('error', () => {});
    await slow.connect();
    const timeoutError = await errorOf(slow.query('SELECT pg_sleep(1)'));
    await slow.end().catch(() => {});
    expect(timeoutError.message).toMatch(/timeout/i);
    expect(isDatabaseUnavailable(timeoutError), timeoutError.message).toBe(true);

    const client = new pg.Client({ connectionString: db.url });
    client.on('error', () => {});
    await client.connect();
    const ownPid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const other = new pg.Client({ connectionString: db.url });
    other.on('error', () => {});
    await other.connect();
    await other.query('SELECT pg_terminate_backend($1)', [ownPid]);
    await other.end();
    const rawError = await errorOf(client.query('SELECT 1'));
    await client.end().catch(() => {});
    expect(isDatabaseUnavailable(rawError), rawError.message).toBe(true);
  });

  it('is false for errors that are bugs or bad data, so they stay 500 or map to their own code', async () => {
    const sequelize = connect(db.url);
    try {
      for (const sql of ['SELEC 1', 'SELECT 1/0', "SELECT 'x'::uuid", 'SELECT * FROM no_such_table']) {
        const e = await errorOf(sequelize.query(sql));
        expect(isDatabaseUnavailable(e), `${sql}: ${e.message}`).toBe(false);
      }
      expect(isDatabaseUnavailable(new TypeError("Cannot read properties of undefined (reading 'id')"))).toBe(
        false,
      );
      expect(isDatabaseUnavailable(undefined)).toBe(false);
    } finally {
      await sequelize.close();
    }
  });
});
