/**
 * Per-deployment databases on a real PostgreSQL: the server of DATABASE_URL when it is set (on these
 * machines a cluster that trusts local connections), else the provisioner's own embedded cluster
 * (password authentication) in a temporary folder on a free port.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLocalDatabaseProvisioner,
  type DatabaseInfo,
  type LocalDatabaseProvisioner,
  localDatabaseName,
  localDatabaseOptionsFromEnv,
  type ProvisionStep,
  TRUST_WARNING,
} from '../src/database';
import { findFreePort } from '../src/local';

const externalUrl = process.env.DATABASE_URL;
const embedded = !externalUrl;

let dataDir: string;
let embeddedPort = 0;
let adminUrl: string;
let provisioner: LocalDatabaseProvisioner;
let warnings: string[];
const logs: string[] = [];
const hooks: { afterStep?: (step: ProvisionStep, deploymentId: string) => void | Promise<void> } = {};
const provisioned: DatabaseInfo[] = [];
const deploymentIds: string[] = [];

async function withClient<T>(
  config: string | pg.ClientConfig,
  fn: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client(typeof config === 'string' ? { connectionString: config } : config);
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

async function admin<R extends pg.QueryResultRow = pg.QueryResultRow>(
  sql: string,
  params: unknown[] = [],
): Promise<R[]> {
  return withClient(adminUrl, async (c) => (await c.query<R>(sql, params)).rows);
}

/** The error a connection attempt fails with (or null when it succeeds). */
async function connectError(config: pg.ClientConfig): Promise<{ code?: string; message: string } | null> {
  try {
    await withClient({ ...config, connectionTimeoutMillis: 10_000 }, (c) => c.query('SELECT 1'));
    return null;
  } catch (err) {
    return err as { code?: string; message: string };
  }
}

async function roleAndDatabase(name: string): Promise<{ roles: number; databases: number }> {
  const [row] = await admin<{ roles: number; databases: number }>(
    `SELECT (SELECT count(*)::int FROM pg_roles WHERE rolname = $1) AS roles,
            (SELECT count(*)::int FROM pg_database WHERE datname = $1) AS databases`,
    [name],
  );
  return row!;
}

async function provision(): Promise<DatabaseInfo> {
  const id = randomUUID();
  deploymentIds.push(id);
  const info = await provisioner.provision(id);
  provisioned.push(info);
  return info;
}

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coderunner-appsdb-test-'));
  if (externalUrl) {
    provisioner = createLocalDatabaseProvisioner({
      adminUrl: externalUrl,
      dataDir,
      log: (m) => logs.push(m),
      testHooks: hooks,
    });
    adminUrl = externalUrl;
  } else {
    embeddedPort = await findFreePort();
    provisioner = createLocalDatabaseProvisioner({
      dataDir,
      embeddedPort,
      log: (m) => logs.push(m),
      testHooks: hooks,
    });
  }
  ({ warnings } = await provisioner.start());
  if (embedded) {
    // The embedded cluster keeps its superuser password in its folder: the test reads it to inspect.
    const password = fs.readFileSync(path.join(dataDir, 'apps-pg', 'pg-superuser-password'), 'utf8').trim();
    adminUrl = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${embeddedPort}/postgres`;
  }
});

afterAll(async () => {
  if (provisioner) {
    for (const id of deploymentIds) await provisioner.destroy(id).catch(() => {});
    await provisioner.stop();
  }
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

describe(`local app databases (${embedded ? 'embedded PostgreSQL, scram' : 'DATABASE_URL cluster'})`, () => {
  it('start() reports whether the cluster isolates app databases', () => {
    if (embedded) {
      expect(warnings).toEqual([]);
    } else {
      // These machines' PostgreSQL trusts 127.0.0.1: isolation is impossible, and we say so.
      expect(warnings).toContain(TRUST_WARNING);
      // On a shared cluster we do not revoke on databases we did not create: we name them instead.
      expect(warnings.some((w) => w.includes('"postgres"'))).toBe(true);
    }
  });

  it('provisions a database the app can create tables in, write and read', async () => {
    const info = await provision();
    const name = info.connectionInfo.database;
    expect(name).toMatch(/^app_[0-9a-f]{32}$/);
    expect(info.connectionInfo.user).toBe(name);
    expect(info.sandboxId).toBe(`localdb-${name}`);
    expect(info.connectionInfo.host).toBe('127.0.0.1');
    expect(info.connectionInfo.port).toBe(
      embedded ? embeddedPort : Number(new URL(externalUrl!).port || 5432),
    );
    expect(info.connectionInfo.url).toBe(
      `postgres://${name}:${encodeURIComponent(info.connectionInfo.password)}@127.0.0.1:${info.connectionInfo.port}/${name}`,
    );
    expect(info.connectionInfo.password.length).toBeGreaterThanOrEqual(43);

    const rows = await withClient(info.connectionInfo.url, async (c) => {
      await c.query('CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)');
      await c.query('INSERT INTO notes (body) VALUES ($1)', ['hello']);
      return (await c.query<{ body: string; who: string }>('SELECT body, current_user AS who FROM notes'))
        .rows;
    });
    expect(rows).toEqual([{ body: 'hello', who: name }]);

    const [role] = await admin(
      `SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolconnlimit
         FROM pg_roles WHERE rolname = $1`,
      [name],
    );
    expect(role).toEqual({
      rolsuper: false,
      rolcreatedb: false,
      rolcreaterole: false,
      rolreplication: false,
      rolbypassrls: false,
      rolconnlimit: 20,
    });
    const [db] = await admin<{ owner: string; public_connect: boolean }>(
      `SELECT pg_get_userbyid(datdba) AS owner, has_database_privilege('public', oid, 'CONNECT') AS public_connect
         FROM pg_database WHERE datname = $1`,
      [name],
    );
    expect(db).toEqual({ owner: name, public_connect: false });
    expect(await provisioner.exists(deploymentIds.at(-1)!)).toBe(true);
  });

  it("keeps another deployment's role out of a database", async () => {
    const first = await provision();
    const second = await provision();
    const [priv] = await admin<{ can: boolean }>(`SELECT has_database_privilege($1, $2, 'CONNECT') AS can`, [
      second.connectionInfo.user,
      first.connectionInfo.database,
    ]);
    expect(priv!.can).toBe(false);

    const intruder = {
      host: '127.0.0.1',
      port: first.connectionInfo.port,
      user: second.connectionInfo.user,
      password: second.connectionInfo.password,
      database: first.connectionInfo.database,
    };
    if (embedded) {
      const err = await connectError(intruder);
      expect(err?.code).toBe('42501'); // permission denied for database
      // …and nobody gets in with a wrong password.
      const guess = await connectError({ ...intruder, user: first.connectionInfo.user, password: 'guess' });
      expect(guess?.code).toBe('28P01');
    } else {
      // Trust auth: the CONNECT privilege is all that stands in the way, and start() warned.
      expect(warnings).toContain(TRUST_WARNING);
    }
  });

  it.runIf(embedded)("keeps an app role out of the cluster's other databases", async () => {
    // A database standing for the control plane's, created after start(): provisioning closes it too.
    await admin('CREATE DATABASE coderunner_control');
    const app = await provision();
    for (const database of ['coderunner_control', 'postgres', 'template1']) {
      const err = await connectError({
        host: '127.0.0.1',
        port: app.connectionInfo.port,
        user: app.connectionInfo.user,
        password: app.connectionInfo.password,
        database,
      });
      expect(err?.code, database).toBe('42501');
    }
  });

  it('destroy drops the database (closing its connections) and the role; twice is fine', async () => {
    const info = await provision();
    const id = deploymentIds.at(-1)!;
    const name = info.connectionInfo.database;
    const open = new pg.Client({ connectionString: info.connectionInfo.url });
    open.on('error', () => {});
    await open.connect();

    await provisioner.destroy(id);
    await open.end().catch(() => {});
    expect(await roleAndDatabase(name)).toEqual({ roles: 0, databases: 0 });
    expect(await provisioner.exists(id)).toBe(false);
    await provisioner.destroy(id);
    await provisioner.destroy(randomUUID()); // never provisioned
  });

  it('reset empties the database and keeps its credentials; destroyDatabase drops it by its sandbox id', async () => {
    const info = await provision();
    const { url, database } = info.connectionInfo;
    await withClient({ connectionString: url }, async (c) => {
      await c.query('CREATE TABLE notes (text text)');
      await c.query("INSERT INTO notes VALUES ('a'), ('b')");
    });
    await provisioner.reset(info.sandboxId);
    const tables = await withClient({ connectionString: url }, (c) =>
      c.query("SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'notes'"),
    );
    expect(tables.rows[0].n).toBe(0);
    // Still closed to other roles.
    const other = await provision();
    const err = await connectError({
      connectionString: other.connectionInfo.url.replace(/\/[^/]+$/, `/${database}`),
    });
    expect(err?.code).toBe('42501');

    await provisioner.destroyDatabase(info.sandboxId);
    expect(await roleAndDatabase(database)).toEqual({ roles: 0, databases: 0 });
    await expect(provisioner.reset(info.sandboxId)).rejects.toThrow(/no longer exists/);
    await expect(provisioner.reset('localdb-../x')).rejects.toThrow(/not the id of a database/);
  });

  it.each<ProvisionStep>(['role-created', 'database-created', 'privileges-set', 'verified'])(
    'a failure after %s leaves neither role nor database behind',
    async (step) => {
      const id = randomUUID();
      deploymentIds.push(id);
      hooks.afterStep = (s) => {
        if (s === step) throw new Error(`injected failure at ${s}`);
      };
      try {
        await expect(provisioner.provision(id)).rejects.toThrow(`injected failure at ${step}`);
      } finally {
        delete hooks.afterStep;
      }
      expect(await roleAndDatabase(localDatabaseName(id))).toEqual({ roles: 0, databases: 0 });
      expect(await provisioner.exists(id)).toBe(false);
    },
  );

  it('never drops a role or database it did not create', async () => {
    const id = randomUUID();
    const name = localDatabaseName(id);
    await admin(`CREATE ROLE ${name} NOLOGIN`);
    try {
      await expect(provisioner.provision(id)).rejects.toThrow(/already exists/);
      await expect(provisioner.destroy(id)).rejects.toThrow(/not created by CodeRunner/);
      expect(await roleAndDatabase(name)).toEqual({ roles: 1, databases: 0 });
    } finally {
      await admin(`DROP ROLE IF EXISTS ${name}`);
    }
  });

  it('provisions several deployments at once', async () => {
    const infos = await Promise.all([provision(), provision(), provision()]);
    expect(new Set(infos.map((i) => i.sandboxId)).size).toBe(3);
    for (const info of infos) {
      const [row] = await withClient(
        info.connectionInfo.url,
        async (c) => (await c.query('SELECT 1 AS one')).rows,
      );
      expect(row).toEqual({ one: 1 });
    }
  });

  it.runIf(embedded)('keeps app databases across a restart of the embedded cluster', async () => {
    const info = await provision();
    const id = deploymentIds.at(-1)!;
    await withClient(info.connectionInfo.url, (c) => c.query('CREATE TABLE kept AS SELECT 42 AS answer'));
    await provisioner.stop();
    provisioner = createLocalDatabaseProvisioner({
      dataDir,
      embeddedPort,
      connectionLimit: 3,
      log: (m) => logs.push(m),
      testHooks: hooks,
    });
    expect((await provisioner.start()).warnings).toEqual([]);
    expect(await provisioner.exists(id)).toBe(true);
    const rows = await withClient(
      info.connectionInfo.url,
      async (c) => (await c.query('SELECT answer FROM kept')).rows,
    );
    expect(rows).toEqual([{ answer: 42 }]);
    // The connection limit is the provisioner's setting.
    const limited = await provision();
    const [role] = await admin('SELECT rolconnlimit FROM pg_roles WHERE rolname = $1', [
      limited.connectionInfo.user,
    ]);
    expect(role).toEqual({ rolconnlimit: 3 });
  });

  it.runIf(embedded)(
    'the embedded apps cluster drops a client that never authenticates within 10 s',
    async () => {
      const [row] = await admin<{ seconds: number }>(
        "SELECT setting::int AS seconds FROM pg_settings WHERE name = 'authentication_timeout'",
      );
      expect(row!.seconds).toBeLessThanOrEqual(10);
      // A startup packet for an app role, then silence: the server asks for the password and gives up.
      const info = await provision();
      const socket = net.connect(embeddedPort, '127.0.0.1');
      socket.on('error', () => {});
      const params = Buffer.from(
        `user\0${info.connectionInfo.user}\0database\0${info.connectionInfo.database}\0\0`,
      );
      const startup = Buffer.alloc(8 + params.length);
      startup.writeInt32BE(startup.length, 0);
      startup.writeInt32BE(196608, 4); // protocol 3.0
      params.copy(startup, 8);
      const started = Date.now();
      const firstReply = new Promise<string>((resolve) =>
        socket.once('data', (d) => resolve(String.fromCharCode(d[0]!))),
      );
      const closed = new Promise<number>((resolve) =>
        socket.once('close', () => resolve(Date.now() - started)),
      );
      socket.write(startup);
      expect(await firstReply).toBe('R'); // an authentication request, left unanswered
      const elapsed = await closed;
      expect(elapsed).toBeGreaterThanOrEqual(row!.seconds * 1000 - 1000);
    },
  );

  it.runIf(embedded)(
    'the embedded apps cluster comes back on its own after its postmaster is killed',
    async () => {
      const pidFile = path.join(dataDir, 'apps-pg', 'pg', 'postmaster.pid');
      const before = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
      process.kill(before, 'SIGKILL');
      const deadline = Date.now() + 60_000;
      let info: DatabaseInfo | undefined;
      while (!info && Date.now() < deadline) {
        info = await provision().catch(() => undefined);
        if (!info) await new Promise((r) => setTimeout(r, 200));
      }
      expect(info).toBeDefined();
      expect(Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0])).not.toBe(before);
      expect(logs.some((l) => l.includes('embedded PostgreSQL stopped; starting it again'))).toBe(true);
      const rows = await withClient(
        info!.connectionInfo.url,
        async (c) => (await c.query('SELECT 1 AS ok')).rows,
      );
      expect(rows).toEqual([{ ok: 1 }]);
    },
  );

  it('never logs a password', () => {
    expect(provisioned.length).toBeGreaterThan(3);
    expect(logs.some((l) => l.includes('provisioned database'))).toBe(true);
    for (const { connectionInfo } of provisioned) {
      for (const line of logs) {
        expect(line).not.toContain(connectionInfo.password);
        expect(line).not.toContain(encodeURIComponent(connectionInfo.password));
      }
    }
  });
});

describe('localDatabaseOptionsFromEnv', () => {
  it('reads the connection limit of app roles, and refuses a bad one naming the variable', () => {
    expect(
      localDatabaseOptionsFromEnv({ CODERUNNER_APPS_DB_CONNECTION_LIMIT: '5' }, '/d').connectionLimit,
    ).toBe(5);
    expect(localDatabaseOptionsFromEnv({}, '/d').connectionLimit).toBeUndefined();
    for (const bad of ['0', 'many', '-3', '2.5']) {
      expect(() => localDatabaseOptionsFromEnv({ CODERUNNER_APPS_DB_CONNECTION_LIMIT: bad }, '/d')).toThrow(
        /CODERUNNER_APPS_DB_CONNECTION_LIMIT must be a whole number/,
      );
    }
  });
});
