import { connect, type Sequelize } from '@coderunner/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CliOptions,
  freshConfigDir,
  readConfig,
  registerViaCli,
  removeTempDirs,
  runCli,
  startTestServer,
  type TestServer,
} from './helpers';

let server: TestServer;
let sequelize: Sequelize;
beforeAll(async () => {
  server = await startTestServer();
  sequelize = connect(server.db.url, { poolMax: 2 });
});
afterAll(async () => {
  await sequelize?.close();
  await server?.close();
  removeTempDirs();
});

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** A fresh account; every call runs as it. */
async function account(): Promise<{
  cli: (args: string[], extra?: Partial<CliOptions>) => ReturnType<typeof runCli>;
}> {
  const configDir = freshConfigDir();
  await registerViaCli(server, configDir);
  return { cli: (args, extra = {}) => runCli(args, { configDir, apiUrl: server.url, ...extra }) };
}

describe('projects create / show / list / rename / delete', () => {
  it('a full round trip, human and --json', async () => {
    const { cli } = await account();

    const empty = await cli(['projects', 'list']);
    expect(empty.code).toBe(0);
    expect(empty.stdout).toBe('No projects yet: create one with `coderunner projects create <name>`\n');
    expect((await cli(['projects', 'list', '--json'])).json()).toEqual([]);

    const created = await cli(['projects', 'create', 'web', '--description', 'my site']);
    expect(created.code).toBe(0);
    expect(created.stderr).toBe('');
    expect(created.stdout).toMatch(/^Created project web \([0-9a-f-]{36}\)\n$/);

    const api = await cli(['projects', 'create', 'api', '--json']);
    expect(api.code).toBe(0);
    const apiJson = api.json();
    expect(Object.keys(apiJson)).toEqual([
      'id',
      'name',
      'description',
      'url',
      'currentDeploymentId',
      'createdAt',
      'updatedAt',
    ]);
    expect(apiJson).toMatchObject({ name: 'api', description: null, currentDeploymentId: null });
    expect(apiJson.url).toBe(
      `http://api-${apiJson.id.replace(/-/g, '').slice(0, 10)}.localhost:${new URL(server.url).port}/`,
    );
    expect(apiJson.createdAt).toMatch(ISO);

    const list = await cli(['projects', 'list']);
    expect(list.code).toBe(0);
    const lines = list.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toBe('NAME  ID                                    CREATED           DESCRIPTION');
    expect(lines[1]).toMatch(/^api {3}[0-9a-f-]{36} {2}\d{4}-\d\d-\d\d \d\d:\d\d$/); // newest first
    expect(lines[2]).toMatch(/^web {3}[0-9a-f-]{36} {2}\d{4}-\d\d-\d\d \d\d:\d\d {2}my site$/);

    const listJson = (await cli(['projects', 'list', '--json'])).json();
    expect(listJson.map((p: { name: string }) => p.name)).toEqual(['api', 'web']);
    expect(listJson[0]).toEqual(apiJson);

    // show by name and by id
    const byName = await cli(['projects', 'show', 'web', '--json']);
    expect(byName.code).toBe(0);
    const web = byName.json();
    expect(web).toMatchObject({ name: 'web', description: 'my site' });
    const byId = await cli(['projects', 'show', web.id, '--json']);
    expect(byId.json()).toEqual(web);
    const human = await cli(['projects', 'show', web.id]);
    expect(human.stdout.split('\n').slice(0, 3)).toEqual([
      'name         web',
      `id           ${web.id}`,
      'description  my site',
    ]);

    // rename by name, then by id
    const renamed = await cli(['projects', 'rename', 'web', 'website', '--json']);
    expect(renamed.code).toBe(0);
    expect(renamed.json()).toMatchObject({ id: web.id, name: 'website', description: 'my site' });
    const renamedHuman = await cli(['projects', 'rename', web.id, 'site']);
    expect(renamedHuman.stdout).toBe('Renamed project website to site\n');

    // delete with --yes, by name and by id
    const del = await cli(['projects', 'delete', 'site', '--yes', '--json']);
    expect(del.code).toBe(0);
    expect(del.json()).toEqual({ id: web.id, name: 'site', deleted: true });
    const delHuman = await cli(['projects', 'rm', apiJson.id, '-y']);
    expect(delHuman.stdout).toBe(`Deleted project api (${apiJson.id})\n`);
    expect((await cli(['projects', 'list', '--json'])).json()).toEqual([]);
  });

  it('server refusals are exit 1 with the server message: CONFLICT, FORBIDDEN (quota), NOT_FOUND', async () => {
    const { cli } = await account();
    expect((await cli(['projects', 'create', 'one'])).code).toBe(0);

    const dup = await cli(['projects', 'create', 'one']);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toBe('error: you already have a project named "one"\n');
    expect(dup.stdout).toBe('');

    expect((await cli(['projects', 'create', 'two'])).code).toBe(0);
    expect((await cli(['projects', 'create', 'three'])).code).toBe(0);
    const quota = await cli(['projects', 'create', 'four', '--json']);
    expect(quota.code).toBe(1);
    expect(quota.stderr).toBe('error: the free plan allows 3 projects; delete one or upgrade your plan\n');
    expect(quota.stdout).toBe('');

    const rename = await cli(['projects', 'rename', 'one', 'two']);
    expect(rename.code).toBe(1);
    expect(rename.stderr).toBe('error: you already have a project named "two"\n');

    for (const args of [
      ['projects', 'show', 'nope'],
      ['projects', 'show', '00000000-0000-4000-8000-000000000000'],
      ['projects', 'rename', 'nope', 'x'],
      ['projects', 'delete', 'nope', '--yes'],
    ]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(/^error: project "(nope|00000000-0000-4000-8000-000000000000)" not found\n$/);
    }

    const invalid = await cli(['projects', 'create', ' ']);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toBe('error: name: must not be empty\n');
  });

  it("another user's project is not found, by id or by name", async () => {
    const alice = await account();
    const bob = await account();
    const p = (await alice.cli(['projects', 'create', 'secret', '--json'])).json();
    for (const ref of [p.id, 'secret']) {
      const r = await bob.cli(['projects', 'show', ref]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`error: project "${ref}" not found\n`);
      expect((await bob.cli(['projects', 'delete', ref, '--yes'])).code).toBe(1);
    }
    expect((await alice.cli(['projects', 'show', p.id])).code).toBe(0);
  });

  it('a project named like a UUID is still found by its name', async () => {
    const { cli } = await account();
    const name = '11111111-2222-4333-8444-555555555555';
    expect((await cli(['projects', 'create', name])).code).toBe(0);
    const r = await cli(['projects', 'show', name, '--json']);
    expect(r.code).toBe(0);
    expect(r.json().name).toBe(name);
  });

  it('delete without --yes and without a terminal refuses with a usage error (exit 2) and deletes nothing', async () => {
    const { cli } = await account();
    expect((await cli(['projects', 'create', 'keep'])).code).toBe(0);
    const r = await cli(['projects', 'delete', 'keep']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: not deleting project "keep" without confirmation: .*--yes\n$/);
    expect(r.stdout).toBe('');
    expect((await cli(['projects', 'show', 'keep'])).code).toBe(0);
  });

  it('descriptions with newlines and terminal escapes stay on one harmless table line', async () => {
    const { cli } = await account();
    const evil = 'line one\nline two \u001b[31mred\u001b[0m';
    expect((await cli(['projects', 'create', 'odd', '--description', evil])).code).toBe(0);
    const list = await cli(['projects', 'list']);
    expect(list.stdout).not.toContain('\u001b');
    expect(list.stdout.trimEnd().split('\n')).toHaveLength(2);
    expect(list.stdout).toContain('line one line two \\x1b[31mred\\x1b[0m');
    // JSON keeps the exact value
    expect((await cli(['projects', 'show', 'odd', '--json'])).json().description).toBe(evil);
  });
});

describe('projects list pagination', () => {
  it('follows nextCursor across pages; --limit caps the total; names on later pages resolve', async () => {
    const { cli } = await account();
    const configDir = (await cli(['whoami', '--json'])).json();
    const userId: string = configDir.id;
    // More projects than one page (100) holds; inserted directly, past the plan's quota.
    await sequelize.query(
      `INSERT INTO projects (user_id, name, created_at)
       SELECT :userId, 'p' || lpad(i::text, 3, '0'), now() - (i || ' seconds')::interval
       FROM generate_series(1, 230) AS i`,
      { replacements: { userId } },
    );
    const all = await cli(['projects', 'list', '--json']);
    expect(all.code).toBe(0);
    const names: string[] = all.json().map((p: { name: string }) => p.name);
    expect(names).toHaveLength(230);
    expect(new Set(names).size).toBe(230);
    expect(names[0]).toBe('p001'); // newest first
    expect(names[229]).toBe('p230');

    const limited = await cli(['projects', 'list', '--limit', '150', '--json']);
    expect(limited.json().map((p: { name: string }) => p.name)).toEqual(names.slice(0, 150));
    const few = await cli(['projects', 'ls', '--limit', '2']);
    expect(few.stdout.trimEnd().split('\n')).toHaveLength(3);

    const last = await cli(['projects', 'show', 'p230', '--json']);
    expect(last.code).toBe(0);
    expect(last.json().name).toBe('p230');

    for (const bad of ['0', '-1', 'x', '1.5']) {
      const r = await cli(['projects', 'list', '--limit', bad]);
      expect(r.code, bad).toBe(2);
      expect(r.stderr).toMatch(
        /^error: option '--limit <n>' argument '.*' is invalid\. must be a whole number/,
      );
    }
  });
});

describe('not logged in', () => {
  it('every projects command is exit 3 with the advice to log in', async () => {
    const configDir = freshConfigDir();
    for (const args of [
      ['projects', 'list'],
      ['projects', 'create', 'x'],
      ['projects', 'show', 'x'],
      ['projects', 'rename', 'x', 'y'],
      ['projects', 'delete', 'x', '--yes'],
    ]) {
      const r = await runCli(args, { configDir, apiUrl: server.url });
      expect(r.code, args.join(' ')).toBe(3);
      expect(r.stderr).toBe('error: not logged in: run coderunner login\n');
    }
  });

  it('after the password changed elsewhere, the saved session is expired (exit 3)', async () => {
    const configDir = freshConfigDir();
    const email = await registerViaCli(server, configDir);
    const other = freshConfigDir();
    const login = await runCli(['login', '--email', email, '--password-stdin'], {
      configDir: other,
      apiUrl: server.url,
      input: 'correct horse battery staple',
    });
    expect(login.code).toBe(0);
    const change = await runCli(['passwd', '--password-stdin'], {
      configDir: other,
      apiUrl: server.url,
      input: 'correct horse battery staple\nsomething else entirely\n',
    });
    expect(change.code).toBe(0);
    expect(readConfig(configDir).token).toBeTruthy();
    const r = await runCli(['projects', 'list'], { configDir, apiUrl: server.url });
    expect(r.code).toBe(3);
    expect(r.stderr).toBe('error: your session has expired: run coderunner login\n');
  });
});
