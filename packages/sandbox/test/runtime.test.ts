/** detectRuntime on project folders: each layout, the precedence between them, and every error. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { detectRuntime, RuntimeDetectionError } from '../src/runtime';

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'coderunner-runtime-'));
let counter = 0;

afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

/** A project folder holding `files` (objects are written as JSON). */
function project(files: Record<string, string | object>): string {
  const dir = path.join(base, `p${counter++}`);
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  }
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

const manifest = (fields: unknown) => project({ 'coderunner.json': JSON.stringify(fields) });

async function detectError(dir: string, requested?: Parameters<typeof detectRuntime>[1]): Promise<string> {
  const error = await detectRuntime(dir, requested).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RuntimeDetectionError);
  return (error as Error).message;
}

describe('detectRuntime: manifest', () => {
  it('takes every field of coderunner.json', async () => {
    const dir = manifest({
      install: 'make deps',
      build: 'make',
      start: './server --port 9000',
      port: 9000,
      env: { MODE: 'prod' },
      healthcheckPath: '/healthz',
      database: 'postgres',
    });
    expect(await detectRuntime(dir)).toEqual({
      runtime: 'manifest',
      install: 'make deps',
      build: 'make',
      start: './server --port 9000',
      port: 9000,
      env: { MODE: 'prod' },
      healthcheckPath: '/healthz',
      database: 'postgres',
    });
  });

  it('needs only start, and wins over package.json', async () => {
    const dir = project({
      'coderunner.json': { start: 'node app.js' },
      'package.json': { scripts: { start: 'x' } },
    });
    expect(await detectRuntime(dir)).toEqual({ runtime: 'manifest', start: 'node app.js', env: {} });
  });

  it.each([
    [{}, 'coderunner.json: start must be a non-empty string'],
    [{ start: '' }, 'coderunner.json: start must be a non-empty string'],
    [{ start: '   ' }, 'coderunner.json: start must be a non-empty string'],
    [{ start: 42 }, 'coderunner.json: start must be a non-empty string'],
    [{ start: 'x', install: '' }, 'coderunner.json: install must be a non-empty string'],
    [{ start: 'x', build: ['make'] }, 'coderunner.json: build must be a non-empty string'],
    [{ start: 'x', port: 70000 }, 'coderunner.json: port must be between 1 and 65535'],
    [{ start: 'x', port: 80.5 }, 'coderunner.json: port must be a whole number'],
    [{ start: 'x', port: '8080' }, 'coderunner.json: port must be a number'],
    [{ start: 'x', healthcheckPath: 'health' }, 'coderunner.json: healthcheckPath must start with "/"'],
    [
      { start: 'x', database: 'mysql' },
      'coderunner.json: database must be "postgres" (the only database offered)',
    ],
    [
      { start: 'x', env: { PORT_X: 1 } },
      'coderunner.json: env.PORT_X must be a string (quote numbers and booleans)',
    ],
    [{ start: 'x', env: ['A=1'] }, 'coderunner.json: env must be an object of string values'],
    [{ start: 'x', strat: 'y' }, 'coderunner.json: unknown field "strat"'],
    [
      { start: 'x', restart: 'sometimes' },
      'coderunner.json: restart must be "on-failure", "always" or "never"',
    ],
    [
      { start: 'x', restartLimit: { exits: 0, withinMinutes: 10 } },
      'coderunner.json: restartLimit.exits must be between 1 and 100',
    ],
    [
      { start: 'x', restartLimit: { exits: 3, withinMinutes: 0 } },
      'coderunner.json: restartLimit.withinMinutes must be more than 0',
    ],
    [
      { start: 'x', restartLimit: { exits: 3, withinMinutes: 10, max: 1 } },
      'coderunner.json: restartLimit: unknown field "max" (known: exits, withinMinutes)',
    ],
    [
      { start: 'x', restartLimit: 5 },
      'coderunner.json: restartLimit must be an object like {"exits": 5, "withinMinutes": 10}',
    ],
    [[], 'coderunner.json must be a JSON object'],
  ])('refuses %j with a clear message', async (fields, message) => {
    expect(await detectError(manifest(fields))).toContain(message);
  });

  it('takes a restart policy and its limit', async () => {
    const plan = await detectRuntime(
      manifest({ start: 'x', restart: 'always', restartLimit: { exits: 3, withinMinutes: 1.5 } }),
    );
    expect(plan).toMatchObject({ restart: 'always', restartLimit: { exits: 3, withinMinutes: 1.5 } });
  });

  it('names bad env variable names', async () => {
    expect(await detectError(manifest({ start: 'x', env: { '1BAD': 'v' } }))).toBe(
      'coderunner.json: env.1BAD is not a valid variable name (letters, digits and _, not starting with a digit)',
    );
  });

  it('reports every problem at once', async () => {
    expect(await detectError(manifest({ port: 0, healthcheckPath: 'x' }))).toBe(
      'coderunner.json: start must be a non-empty string; port must be between 1 and 65535; healthcheckPath must start with "/"',
    );
  });

  it('says when coderunner.json is not JSON', async () => {
    expect(await detectError(project({ 'coderunner.json': '{ start: node }' }))).toMatch(
      /^coderunner\.json is not valid JSON: /,
    );
  });
});

describe('detectRuntime: Node.js', () => {
  it('uses npm ci with a lock file, npm install without, and npm start', async () => {
    const locked = project({
      'package.json': { scripts: { start: 'node a.js' } },
      'package-lock.json': '{}',
    });
    expect(await detectRuntime(locked)).toEqual({
      runtime: 'nodejs',
      install: 'npm ci --no-audit --no-fund',
      start: 'npm start',
      env: {},
    });
    const shrinkwrap = project({ 'package.json': { scripts: { start: 'x' } }, 'npm-shrinkwrap.json': '{}' });
    expect((await detectRuntime(shrinkwrap)).install).toBe('npm ci --no-audit --no-fund');
    const unlocked = project({
      'package.json': { dependencies: { 'is-number': '7.0.0' }, scripts: { start: 'x' } },
    });
    expect((await detectRuntime(unlocked)).install).toBe('npm install --no-audit --no-fund');
  });

  it('skips the install step when package.json declares no dependency and no install hook', async () => {
    expect(
      (await detectRuntime(project({ 'package.json': { scripts: { start: 'x' } } }))).install,
    ).toBeUndefined();
    const empty = project({ 'package.json': { dependencies: {}, scripts: { start: 'x' } } });
    expect((await detectRuntime(empty)).install).toBeUndefined();
    for (const pkg of [
      { devDependencies: { a: '1' } },
      { optionalDependencies: { a: '1' } },
      { scripts: { start: 'x', postinstall: 'node setup.js' } },
    ]) {
      expect(
        (await detectRuntime(project({ 'package.json': { scripts: { start: 'x' }, ...pkg } }))).install,
      ).toBe('npm install --no-audit --no-fund');
    }
  });

  it('builds with npm run build when there is a build script', async () => {
    const dir = project({ 'package.json': { scripts: { build: 'tsc', start: 'node dist/a.js' } } });
    expect((await detectRuntime(dir)).build).toBe('npm run build');
    const none = project({ 'package.json': { scripts: { build: '', start: 'x' } } });
    expect((await detectRuntime(none)).build).toBeUndefined();
  });

  it('without a start script, starts main, else server.js, else index.js', async () => {
    const withMain = project({ 'package.json': { main: 'src/app.js' }, 'src/app.js': '' });
    expect((await detectRuntime(withMain)).start).toBe('node src/app.js');
    const mainWithoutExtension = project({ 'package.json': { main: 'lib/entry' }, 'lib/entry.js': '' });
    expect((await detectRuntime(mainWithoutExtension)).start).toBe('node lib/entry');
    const oddName = project({ 'package.json': { main: "my app's.js" }, "my app's.js": '' });
    expect((await detectRuntime(oddName)).start).toBe(`node 'my app'\\''s.js'`);
    const server = project({ 'package.json': {}, 'server.js': '', 'index.js': '' });
    expect((await detectRuntime(server)).start).toBe('node server.js');
    const index = project({ 'package.json': {}, 'index.js': '' });
    expect((await detectRuntime(index)).start).toBe('node index.js');
  });

  it('explains what is missing when there is nothing to start', async () => {
    expect(await detectError(project({ 'package.json': { name: 'x' } }))).toBe(
      'package.json has no "start" script and no "main", and there is no server.js or index.js: ' +
        'add "scripts": { "start": "node <your entry file>" } to package.json',
    );
    expect(await detectError(project({ 'package.json': { main: 'gone.js' } }))).toBe(
      'package.json: main "gone.js" does not exist in the project folder; fix it or add a "start" script',
    );
    expect(await detectError(project({ 'package.json': { main: '../../etc/passwd' } }))).toContain(
      'must be a path inside the project folder',
    );
  });

  it('refuses a package.json that is not a JSON object', async () => {
    expect(await detectError(project({ 'package.json': '{"name": ' }))).toMatch(
      /^package\.json is not valid JSON/,
    );
    expect(await detectError(project({ 'package.json': '[1]' }))).toBe('package.json must be a JSON object');
  });
});

describe('detectRuntime: Python', () => {
  it('makes a venv and installs requirements when there are any', async () => {
    const dir = project({ 'requirements.txt': '# web\nflask==3.0.0  # pinned\n', 'main.py': '' });
    expect(await detectRuntime(dir)).toEqual({
      runtime: 'python',
      install: 'python3 -m venv .venv && .venv/bin/pip install --no-input -r requirements.txt',
      start: '.venv/bin/python main.py',
      env: { PYTHONUNBUFFERED: '1' },
    });
  });

  it('uses the system python3 when requirements.txt lists nothing', async () => {
    const dir = project({ 'requirements.txt': '# nothing yet\n\n   \n', 'app.py': '' });
    expect(await detectRuntime(dir)).toEqual({
      runtime: 'python',
      start: 'python3 app.py',
      env: { PYTHONUNBUFFERED: '1' },
    });
    expect((await detectRuntime(project({ 'main.py': '', 'app.py': '' }))).start).toBe('python3 main.py');
  });

  it('installs the project itself when it has a pyproject.toml', async () => {
    const dir = project({ 'pyproject.toml': '[project]\nname = "x"\n', 'app.py': '' });
    expect(await detectRuntime(dir)).toMatchObject({
      install: 'python3 -m venv .venv && .venv/bin/pip install --no-input .',
      start: '.venv/bin/python app.py',
    });
  });

  it('needs main.py or app.py', async () => {
    expect(await detectError(project({ 'requirements.txt': 'flask\n' }))).toBe(
      'found requirements.txt but no main.py or app.py to start: add one, or give the start command in coderunner.json',
    );
  });
});

describe('detectRuntime: unknown layouts and requested runtimes', () => {
  it('lists what it looked for', async () => {
    expect(await detectError(project({ 'README.md': '', Gemfile: '' }))).toBe(
      'cannot tell how to run this project: looked for coderunner.json (any runtime), package.json (Node.js), ' +
        'or requirements.txt, pyproject.toml, main.py, app.py (Python) at the top of the project folder (found Gemfile, README.md)',
    );
    expect(await detectError(project({}))).toMatch(/\(the project folder is empty\)$/);
  });

  it('spots a project packed one folder too deep', async () => {
    expect(await detectError(project({ 'my-app/package.json': {} }))).toMatch(
      /it holds only the folder "my-app": upload the contents of that folder instead$/,
    );
  });

  it('uses the requested runtime, and says when its files are missing', async () => {
    const both = project({ 'package.json': { scripts: { start: 'x' } }, 'main.py': '' });
    expect((await detectRuntime(both)).runtime).toBe('nodejs');
    expect((await detectRuntime(both, 'python')).runtime).toBe('python');
    expect(await detectError(project({ 'main.py': '' }), 'nodejs')).toBe(
      'runtime nodejs was requested, but the project folder has no package.json',
    );
    expect(await detectError(project({ 'package.json': {} }), 'python')).toBe(
      'runtime python was requested, but the project folder has no requirements.txt, pyproject.toml, main.py or app.py',
    );
    expect(await detectError(project({ 'package.json': {} }), 'manifest')).toBe(
      'runtime manifest was requested, but the project folder has no coderunner.json',
    );
    const withManifest = project({
      'coderunner.json': { start: 'x' },
      'package.json': { scripts: { start: 'y' } },
    });
    expect((await detectRuntime(withManifest, 'nodejs')).start).toBe('npm start');
  });
});
