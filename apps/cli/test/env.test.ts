/**
 * `coderunner env set | unset | list` and `deploy --env` against a server that really runs
 * deployments: the CLI is a child process, the app is reached with curl at its public URL.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createClient } from '@coderunner/api/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appFolder,
  type CliOptions,
  curl,
  type DeployServer,
  freshConfigDir,
  readConfig,
  registerTeamAccount,
  removeTempDirs,
  runCli,
  startDeployServer,
  tempDir,
} from './helpers';

let server: DeployServer;
let configDir: string;

const cli = (args: string[], extra: Partial<CliOptions> = {}) =>
  runCli(args, { configDir, apiUrl: server.url, timeoutMs: 90_000, ...extra });

beforeAll(async () => {
  server = await startDeployServer();
  configDir = freshConfigDir();
  await registerTeamAccount(server, configDir);
  for (const name of ['web', 'api']) expect((await cli(['projects', 'create', name])).code).toBe(0);
});
afterAll(async () => {
  await server?.close();
  removeTempDirs();
});

const MASK = '••••••';

describe('coderunner env', () => {
  it('set, list (masked), list --reveal, unset, by project name or id, and --json', async () => {
    const empty = await cli(['env', 'list', '--project', 'web']);
    expect(empty.code, empty.stderr).toBe(0);
    expect(empty.stdout).toContain('No variables in project web');

    const set = await cli(['env', 'set', 'API_KEY=s3cr3t-value', 'DEBUG=1', 'WITH_EQUALS=a=b', '-p', 'web']);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toBe('Set API_KEY, DEBUG, WITH_EQUALS in project web\n');
    expect(set.stderr).toContain('coderunner deploy');
    expect(set.stdout + set.stderr).not.toContain('s3cr3t-value');

    const masked = await cli(['env', 'list', '--project', 'web']);
    expect(masked.code).toBe(0);
    expect(masked.stdout.split('\n')[0]).toMatch(/^NAME +VALUE$/);
    expect(masked.stdout).toMatch(new RegExp(`\\nAPI_KEY +${MASK}\\n`));
    expect(masked.stdout).toMatch(new RegExp(`\\nWITH_EQUALS +${MASK}\\n`));
    expect(masked.stdout).not.toContain('s3cr3t-value');

    const revealed = await cli(['env', 'list', '--project', 'web', '--reveal']);
    expect(revealed.stdout).toMatch(/\nAPI_KEY +s3cr3t-value\n/);
    expect(revealed.stdout).toMatch(/\nWITH_EQUALS +a=b\n/);

    // By id, as every command takes a project; --json is one document.
    const id = (await cli(['projects', 'show', 'web', '--json'])).json().id;
    const json = await cli(['env', 'list', '--project', id, '--json']);
    expect(json.stderr).toBe('');
    expect(json.json()).toEqual({
      projectId: id,
      revealed: false,
      variables: [
        { name: 'API_KEY', value: MASK },
        { name: 'DEBUG', value: MASK },
        { name: 'WITH_EQUALS', value: MASK },
      ],
    });
    const jsonRevealed = await cli(['env', 'list', '--project', id, '--json', '--reveal']);
    expect(jsonRevealed.json().variables[0]).toEqual({ name: 'API_KEY', value: 's3cr3t-value' });

    const unset = await cli(['env', 'unset', 'DEBUG', 'NOPE', '--project', 'web']);
    expect(unset.code, unset.stderr).toBe(0);
    expect(unset.stdout).toBe('Unset DEBUG in project web\n');
    expect(unset.stderr).toContain('not set, nothing to do: NOPE');
    const unsetJson = await cli(['env', 'unset', 'WITH_EQUALS', '--project', 'web', '--json']);
    expect(unsetJson.json()).toEqual({
      projectId: id,
      removed: ['WITH_EQUALS'],
      notSet: [],
      variables: [{ name: 'API_KEY', value: MASK }],
    });

    // Another project's variables are its own; CODERUNNER_PROJECT stands for --project.
    const other = await cli(['env', 'list', '--json'], { env: { CODERUNNER_PROJECT: 'api' } });
    expect(other.json().variables).toEqual([]);
    const noProject = await cli(['env', 'list']);
    expect(noProject.code).toBe(2);
    expect(noProject.stderr).toContain('which project?');
    const missing = await cli(['env', 'list', '--project', 'nope']);
    expect([missing.code, missing.stderr]).toEqual([1, 'error: project "nope" not found\n']);
  });

  it('--from-file reads dotenv syntax (comments, quotes, export); pairs on the command line win', async () => {
    const dir = tempDir();
    const file = path.join(dir, '.env');
    fs.writeFileSync(
      file,
      [
        '# a comment',
        'export EXPORTED=yes',
        'DOUBLE="two words # not a comment"',
        "SINGLE='single $quoted'",
        'MULTI="line one\\nline two"',
        'TRAILING=value # a comment after it',
        'OVERRIDDEN=from-file',
        '',
      ].join('\n'),
    );
    const r = await cli(['env', 'set', '--from-file', file, 'OVERRIDDEN=from-args', '--project', 'api']);
    expect(r.code, r.stderr).toBe(0);
    const list = await cli(['env', 'list', '--project', 'api', '--reveal', '--json']);
    expect(
      Object.fromEntries(
        list.json().variables.map((v: { name: string; value: string }) => [v.name, v.value]),
      ),
    ).toEqual({
      EXPORTED: 'yes',
      DOUBLE: 'two words # not a comment',
      SINGLE: 'single $quoted',
      MULTI: 'line one\nline two',
      TRAILING: 'value',
      OVERRIDDEN: 'from-args',
    });

    const gone = await cli(['env', 'set', '--from-file', path.join(dir, 'missing.env'), '--project', 'api']);
    expect(gone.code).toBe(2);
    expect(gone.stderr).toContain('cannot read');
    fs.writeFileSync(path.join(dir, 'bad.env'), 'GOOD=1\nPGPASSWORD=x\n');
    const bad = await cli(['env', 'set', '--from-file', path.join(dir, 'bad.env'), '--project', 'api']);
    expect([bad.code, bad.stderr]).toEqual([
      2,
      'error: PGPASSWORD is set by the platform; choose another name\n',
    ]);
  });

  it('refuses invalid names before sending, with the same message as the server', async () => {
    for (const [word, message] of [
      ['PORT=80', 'PORT is set by the platform; choose another name'],
      ['CODERUNNER_X=1', 'CODERUNNER_X is set by the platform; choose another name'],
      ['1BAD=x', '"1BAD" is not a valid variable name: use letters, digits and _, not starting with a digit'],
      ['NO_EQUALS', 'expected NAME=value, got "NO_EQUALS"'],
    ] as const) {
      const r = await cli(['env', 'set', word, '--project', 'web']);
      expect(r.code, word).toBe(2);
      expect(r.stderr).toBe(`error: ${message}\n`);
      expect(r.stdout).toBe('');
    }
    // The server says the same to a client that does not check.
    const api = createClient({ url: `${server.url}/trpc`, token: readConfig(configDir).token });
    const projectId = (await cli(['projects', 'show', 'web', '--json'])).json().id;
    for (const [name, message] of [
      ['PORT', 'PORT is set by the platform; choose another name'],
      ['1BAD', '"1BAD" is not a valid variable name: use letters, digits and _, not starting with a digit'],
    ] as const) {
      const err = await api.env.set.mutate({ projectId, vars: { [name]: 'x' } }).catch((e) => e);
      expect([err.data?.code, err.message]).toEqual(['BAD_REQUEST', message]);
    }
    const noSet = await cli(['env', 'set', '--project', 'web']);
    expect([noSet.code, noSet.stderr]).toEqual([2, 'error: give NAME=value pairs, or --from-file <file>\n']);
  });
});

describe('coderunner deploy --env', () => {
  const APP = {
    'coderunner.json': JSON.stringify({ start: 'node app.js' }),
    'app.js': `require('http').createServer((q, s) => s.end(JSON.stringify({ a: process.env.API_KEY ?? null, m: process.env.MODE ?? null, x: process.env.EXTRA ?? null }))).listen(process.env.PORT, '127.0.0.1');`,
  };

  it('adds variables for this deployment only, over the project’s', async () => {
    const r = await cli([
      'deploy',
      appFolder(APP),
      '--project',
      'web',
      '--env',
      'MODE=override',
      '-e',
      'EXTRA=x=1',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const { url } = r.json();
    expect(JSON.parse((await curl(url)).body)).toEqual({ a: 's3cr3t-value', m: 'override', x: 'x=1' });

    // The project has no MODE: the override was for that deployment only.
    const plain = await cli(['deploy', appFolder(APP), '--project', 'web', '--json']);
    expect(plain.code, plain.stderr).toBe(0);
    expect(JSON.parse((await curl(plain.json().url)).body)).toEqual({ a: 's3cr3t-value', m: null, x: null });
    const vars = await cli(['env', 'list', '--project', 'web', '--json']);
    expect(vars.json().variables.map((v: { name: string }) => v.name)).toEqual(['API_KEY']);
  });

  it('refuses a reserved or malformed --env before uploading', async () => {
    const r = await cli(['deploy', appFolder(APP), '--project', 'web', '--env', 'DATABASE_URL=postgres://x']);
    expect([r.code, r.stderr]).toEqual([
      2,
      'error: DATABASE_URL is set by the platform; choose another name\n',
    ]);
    const m = await cli(['deploy', appFolder(APP), '--project', 'web', '--env', 'JUSTANAME']);
    expect([m.code, m.stderr]).toEqual([2, 'error: expected NAME=value, got "JUSTANAME"\n']);
  });
});
