/** The command line itself: help, version, usage errors (exit 2), and the shared modules in-process. */
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigStore, configDir } from '../src/config';
import { Context, DEFAULT_API_URL } from '../src/context';
import { cell, Output, printable } from '../src/output';
import { freshConfigDir, removeTempDirs, runCli, tempDir, writeConfig } from './helpers';

afterAll(() => removeTempDirs());

const cli = (args: string[]) => runCli(args, { configDir: freshConfigDir(), apiUrl: 'http://127.0.0.1:9' });

const COMMANDS = [
  ['register'],
  ['login'],
  ['logout'],
  ['whoami'],
  ['passwd'],
  ['projects'],
  ['projects', 'list'],
  ['projects', 'create'],
  ['projects', 'show'],
  ['projects', 'rename'],
  ['projects', 'delete'],
  ['deploy'],
  ['deployments'],
  ['deployments', 'list'],
  ['deployments', 'show'],
  ['deployments', 'stop'],
  ['deployments', 'start'],
  ['deployments', 'destroy'],
  ['logs'],
  ['db'],
  ['db', 'credentials'],
  ['db', 'reset'],
  ['db', 'backup'],
  ['db', 'backups'],
  ['db', 'restore'],
  ['db', 'download'],
  ['env'],
  ['env', 'set'],
  ['env', 'unset'],
  ['env', 'list'],
  ['open'],
];

describe('help and version', () => {
  it('every command has --help with an example and the global options (exit 0, on stdout)', async () => {
    // A few at a time: 40-odd CLI processes at once on a loaded 2-core machine outlast runCli's timeout.
    const results: Awaited<ReturnType<typeof cli>>[] = [];
    for (let i = 0; i < COMMANDS.length; i += 6) {
      results.push(...(await Promise.all(COMMANDS.slice(i, i + 6).map((c) => cli([...c, '--help'])))));
    }
    results.forEach((r, i) => {
      const name = COMMANDS[i]!.join(' ');
      expect(r.code, name).toBe(0);
      expect(r.stdout, name).toContain(`Usage: coderunner ${name}`);
      expect(r.stdout, name).toMatch(new RegExp(`Examples:\\n {2}\\$ coderunner ${name}`));
      expect(r.stdout, name).toContain('--json');
      expect(r.stdout, name).toContain('--api-url <url>');
      expect(r.stderr, name).toBe('');
    });
  }, 240_000);

  it('the top-level help lists the commands, the environment and the exit codes', async () => {
    const r = await cli(['--help']);
    expect(r.code).toBe(0);
    for (const word of [
      'register',
      'login',
      'logout',
      'whoami',
      'passwd',
      'projects',
      'deploy',
      'deployments',
      'logs',
      'db',
      'env',
      'open',
    ]) {
      expect(r.stdout).toMatch(new RegExp(`\\n {2}${word}\\b`));
    }
    expect(r.stdout).toContain('CODERUNNER_TOKEN');
    expect(r.stdout).toMatch(/\n {2}3 +not logged in/);
    expect(r.stdout).toMatch(/\n {2}130 +interrupted/);
  });

  it('--version prints the package version', async () => {
    const { version } = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    const r = await cli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${version}\n`);
  });
});

describe('usage errors are exit 2, with one error line on stderr and nothing on stdout', () => {
  it.each([
    [['frobnicate'], /^error: unknown command 'frobnicate'/],
    [['whoami', '--frobnicate'], /^error: unknown option '--frobnicate'/],
    [['projects', 'create'], /^error: missing required argument 'name'/],
    [['projects', 'rename', 'a'], /^error: missing required argument 'new-name'/],
    [['projects', 'show', 'a', 'b'], /^error: too many arguments for 'show'/],
    [['projects', 'frobnicate'], /^error: unknown command 'frobnicate'/],
    [['login', '--email'], /^error: option '--email <email>' argument missing/],
    [['--api-url'], /^error: option '--api-url <url>' argument missing/],
    [['projects', 'list', '--limit', 'many'], /^error: option '--limit <n>' argument 'many' is invalid/],
    [['deploy', '--runtime', 'cobol'], /^error: option '--runtime <runtime>' argument 'cobol' is invalid/],
    [['deploy', '--database', 'mysql'], /^error: option '--database <kind>' argument 'mysql' is invalid/],
    [['deploy', 'a', 'b'], /^error: too many arguments for 'deploy'/],
    [['deployments', 'show'], /^error: missing required argument 'deployment'/],
    [['deployments', 'list', '--status', 'x'], /^error: option '--status <status>' argument 'x' is invalid/],
    [['logs'], /^error: name a deployment, or a project with --project \(not both\)/],
    [['logs', 'abc', '--tail', '0'], /^error: option '-n, --tail <n>' argument '0' is invalid/],
    [['db', 'credentials'], /^error: missing required argument 'deployment'/],
    [['db', 'reset'], /^error: missing required argument 'project'/],
    [['db', 'backup'], /^error: missing required argument 'project'/],
    [['db', 'restore', 'web'], /^error: missing required argument 'backup'/],
    [['db', 'download', 'web'], /^error: missing required argument 'backup'/],
    [['open'], /^error: missing required argument 'deployment'/],
    [['env', 'unset', '--project', 'web'], /^error: missing required argument 'names'/],
    [['deploy', '--env'], /^error: option '-e, --env <NAME=value>' argument missing/],
  ])('%j', async (args, message) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toContain('(add --help for usage)');
    expect(r.stdout).toBe('');
  });

  it('no command at all shows the help on stderr (exit 2)', async () => {
    const r = await cli([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Usage: coderunner');
    expect(r.stdout).toBe('');
  });

  it('a config file that is not JSON is exit 1 naming the file', async () => {
    const configDir = freshConfigDir();
    fs.mkdirSync(configDir, { recursive: true });
    fs.writeFileSync(path.join(configDir, 'config.json'), '{ not json');
    const r = await runCli(['whoami'], { configDir, apiUrl: null });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `error: ${path.join(configDir, 'config.json')} is not valid JSON: fix it or delete it\n`,
    );
  });
});

describe('shared modules', () => {
  it('the config folder: CODERUNNER_CONFIG_DIR, else $XDG_CONFIG_HOME/coderunner, else ~/.config/coderunner', () => {
    expect(configDir({ CODERUNNER_CONFIG_DIR: '/a/b', XDG_CONFIG_HOME: '/x' })).toBe('/a/b');
    expect(configDir({ XDG_CONFIG_HOME: '/x' })).toBe('/x/coderunner');
    expect(configDir({ XDG_CONFIG_HOME: 'relative', HOME: '/h' })).toMatch(/\/\.config\/coderunner$/);
    expect(configDir({})).toMatch(/\/\.config\/coderunner$/);
  });

  it('the server address: --api-url, else CODERUNNER_API_URL, else the config, else localhost:8080', () => {
    const dir = freshConfigDir();
    const env = { CODERUNNER_CONFIG_DIR: dir };
    expect(new Context({}, env).apiUrl).toBe(DEFAULT_API_URL);
    expect(DEFAULT_API_URL).toBe('http://localhost:8080');
    writeConfig(dir, { apiUrl: 'http://saved.example:1234' });
    expect(new Context({}, env).apiUrl).toBe('http://saved.example:1234');
    expect(new Context({}, { ...env, CODERUNNER_API_URL: 'https://env.example/' }).apiUrl).toBe(
      'https://env.example',
    );
    expect(
      new Context(
        { apiUrl: 'http://flag.example/base/' },
        { ...env, CODERUNNER_API_URL: 'https://env.example' },
      ).apiUrl,
    ).toBe('http://flag.example/base');
  });

  it('the token: CODERUNNER_TOKEN, else the config', () => {
    const dir = freshConfigDir();
    writeConfig(dir, { token: 'saved' });
    expect(new Context({}, { CODERUNNER_CONFIG_DIR: dir }).token).toEqual({
      value: 'saved',
      source: 'config',
    });
    expect(new Context({}, { CODERUNNER_CONFIG_DIR: dir, CODERUNNER_TOKEN: 'env' }).token).toEqual({
      value: 'env',
      source: 'env',
    });
    expect(new Context({}, { CODERUNNER_CONFIG_DIR: freshConfigDir() }).token).toBeNull();
  });

  it('the config store writes atomically with 0600, creates its folder 0700, keeps only known fields', () => {
    const dir = path.join(tempDir(), 'deep', 'coderunner');
    const store = new ConfigStore({ CODERUNNER_CONFIG_DIR: dir });
    expect(store.read()).toEqual({});
    store.write({ apiUrl: 'http://a', token: 't', email: undefined });
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(store.file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(fs.readFileSync(store.file, 'utf8'))).toEqual({ apiUrl: 'http://a', token: 't' });
    fs.writeFileSync(store.file, JSON.stringify({ apiUrl: 'http://b', extra: 1, token: 5 }));
    expect(store.read()).toEqual({ apiUrl: 'http://b' });
    expect(fs.readdirSync(dir)).toEqual(['config.json']);
  });

  it('colours only on a terminal without NO_COLOR; never with --json', () => {
    const tty = Object.assign(new PassThrough(), { isTTY: true });
    const pipe = new PassThrough();
    expect(new Output(false, { stdout: tty, stderr: tty }, {}).colour).toBe(true);
    expect(new Output(false, { stdout: tty, stderr: tty }, { NO_COLOR: '1' }).colour).toBe(false);
    expect(new Output(false, { stdout: pipe, stderr: tty }, {}).colour).toBe(false);
    expect(new Output(true, { stdout: tty, stderr: tty }, {}).colour).toBe(false);
  });

  it('tables align columns; server text cannot inject terminal control sequences', () => {
    const stdout = new PassThrough();
    const out = new Output(false, { stdout, stderr: new PassThrough() }, {});
    out.table(
      ['A', 'BB'],
      [
        ['xxx', 'y'],
        ['z', ''],
      ],
    );
    expect(String(stdout.read())).toBe('A    BB\nxxx  y\nz\n');
    expect(printable('a\u001b[2Jb\u009bc')).toBe('a\\x1b[2Jb\\x9bc');
    expect(cell('one\ntwo\tthree')).toBe('one two three');
    expect(cell('abcdef', 4)).toBe('abc…');
  });
});
