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
      'coderunner.json: port must be between 1 and 65535; healthcheckPath must start with "/"; start must be a non-empty string (the command that runs the app), or give "static" (the folder of a static site)',
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

/** The starters as their generators made them (apps/server/test/fixtures/starters). */
const STARTERS = path.resolve(__dirname, '../../../apps/server/test/fixtures/starters');

describe('detectRuntime: frameworks, as their own docs deploy them', () => {
  it.each([
    [
      'vite-react',
      { runtime: 'static', framework: 'React (Vite)', static: ['dist'], build: 'npm run build' },
    ],
    [
      'vue-app',
      {
        runtime: 'static',
        framework: 'Vue (Vite)',
        static: ['dist'],
        node: { range: '^22.18.0 || >=24.12.0', source: 'engines.node in package.json' },
      },
    ],
    ['sveltekit-node', { runtime: 'nodejs', framework: 'SvelteKit (adapter-node)', start: 'node build' }],
    [
      'next-app',
      { runtime: 'nodejs', framework: 'Next.js', start: 'node_modules/.bin/next start -p "$PORT"' },
    ],
    [
      'nest-app',
      { runtime: 'nodejs', framework: 'NestJS', start: 'npm run start:prod', build: 'npm run build' },
    ],
  ])('the %s starter', async (name, expected) => {
    const plan = await detectRuntime(path.join(STARTERS, name));
    expect(plan).toMatchObject({ install: 'npm ci --no-audit --no-fund', ...expected });
    if (plan.static) expect(plan.start).toBeUndefined();
  });

  const pkg = (fields: object, files: Record<string, string | object> = {}) =>
    project({ 'package.json': fields, ...files });

  it('Next.js: a custom start server is kept; output export is static out/; standalone runs its server.js', async () => {
    expect(
      (await detectRuntime(pkg({ dependencies: { next: '16' }, scripts: { start: 'node server.js' } })))
        .start,
    ).toBe('npm start');
    expect(
      await detectRuntime(
        pkg(
          { dependencies: { next: '16' }, scripts: { build: 'next build', dev: 'next dev' } },
          {
            'next.config.mjs': "export default { output: 'export' };",
          },
        ),
      ),
    ).toMatchObject({ runtime: 'static', static: ['out'], framework: 'Next.js (static export)' });
    const standalone = await detectRuntime(
      pkg(
        { dependencies: { next: '16' }, scripts: { build: 'next build', start: 'next start' } },
        {
          'next.config.ts': 'const c = { output: "standalone" }; export default c;',
        },
      ),
    );
    expect(standalone.start).toBe('node .next/standalone/server.js');
    expect(standalone.build).toMatch(/^npm run build && .*cp -r \.next\/static \.next\/standalone\/\.next\//);
  });

  it('a start script that runs a dev server is replaced by the production start', async () => {
    expect(
      (await detectRuntime(pkg({ dependencies: { next: '16' }, scripts: { start: 'next dev' } }))).start,
    ).toBe('node_modules/.bin/next start -p "$PORT"');
    expect(
      (
        await detectRuntime(
          pkg({
            dependencies: { '@nestjs/core': '11' },
            scripts: { start: 'nest start', build: 'nest build' },
          }),
        )
      ).start,
    ).toBe('node dist/main');
    expect(
      (
        await detectRuntime(
          pkg({ devDependencies: { vite: '8' }, scripts: { start: 'vite', build: 'vite build' } }),
        )
      ).static,
    ).toEqual(['dist']);
    expect(
      (
        await detectRuntime(
          pkg({ dependencies: { nuxt: '4' }, scripts: { build: 'nuxt build', start: 'nuxt dev' } }),
        )
      ).start,
    ).toBe('node .output/server/index.mjs');
    expect(
      await detectRuntime(pkg({ dependencies: { nuxt: '4' }, scripts: { build: 'nuxt generate' } })),
    ).toMatchObject({ runtime: 'static', static: ['.output/public', 'dist'] });
    expect(
      await detectRuntime(
        pkg({ dependencies: { astro: '5' }, scripts: { build: 'astro build', start: 'astro dev' } }),
      ),
    ).toMatchObject({
      runtime: 'static',
      static: ['dist'],
    });
    expect(
      (
        await detectRuntime(
          pkg({ dependencies: { astro: '5', '@astrojs/node': '9' }, scripts: { build: 'astro build' } }),
        )
      ).start,
    ).toBe('node ./dist/server/entry.mjs');
  });

  it('refuses a dev server it cannot replace, naming the change to make', async () => {
    expect(
      await detectError(pkg({ dependencies: { '@nestjs/core': '11' }, scripts: { start: 'nest start' } })),
    ).toBe(
      'package.json: "start" runs `nest start`, the NestJS dev CLI; add "start:prod": "node dist/main" (after "build": "nest build")',
    );
    expect(
      await detectError(pkg({ dependencies: { react: '19' }, scripts: { start: 'react-scripts start' } })),
    ).toContain(
      '"start" runs `react-scripts start`, a development server: make "start" the production server',
    );
  });

  it('SvelteKit: adapter-static is a static build/; adapter-auto is refused with the change to make', async () => {
    const kit = (adapter: string) =>
      pkg(
        {
          devDependencies: { '@sveltejs/kit': '2', [`@sveltejs/adapter-${adapter}`]: '1' },
          scripts: { build: 'vite build', dev: 'vite dev' },
        },
        {
          'svelte.config.js': `import adapter from '@sveltejs/adapter-${adapter}';\nexport default { kit: { adapter: adapter() } };`,
        },
      );
    expect(await detectRuntime(kit('static'))).toMatchObject({ runtime: 'static', static: ['build'] });
    expect(await detectError(kit('auto'))).toBe(
      "SvelteKit with adapter-auto cannot be deployed here: run `npm install -D @sveltejs/adapter-node` and import adapter from '@sveltejs/adapter-node' instead of '@sveltejs/adapter-auto' in its config file (or @sveltejs/adapter-static for a site without a server)",
    );
  });

  it('Express, Fastify and Koa keep their start script, named in the plan', async () => {
    for (const [dep, name] of [
      ['express', 'Express'],
      ['fastify', 'Fastify'],
      ['koa', 'Koa'],
    ] as const) {
      expect(
        await detectRuntime(pkg({ dependencies: { [dep]: '1' }, scripts: { start: 'node ./bin/www' } })),
      ).toMatchObject({
        runtime: 'nodejs',
        framework: name,
        start: 'npm start',
      });
    }
  });

  it('coderunner.json overrides the framework: "static" serves a folder, "start" runs a command', async () => {
    const files = { 'package.json': { dependencies: { next: '16' }, scripts: { start: 'next start' } } };
    expect(
      await detectRuntime(project({ ...files, 'coderunner.json': { build: 'make', static: 'public/' } })),
    ).toMatchObject({
      runtime: 'static',
      static: ['public'],
      build: 'make',
    });
    expect((await detectRuntime(project({ ...files, 'coderunner.json': { start: './serve' } }))).start).toBe(
      './serve',
    );
    expect(await detectError(manifest({ static: '../etc' }))).toContain(
      'static must be a folder inside the project',
    );
    expect(await detectError(manifest({ static: 'dist', start: 'x' }))).toContain('not both');
  });

  it('the Node version asked for: .node-version, else .nvmrc (nvm forms), else engines.node', async () => {
    const node = async (files: Record<string, string | object>) =>
      (
        await detectRuntime(
          project({ 'package.json': { engines: { node: '>=20' } }, 'index.js': '', ...files }),
        )
      ).node;
    expect(await node({})).toEqual({ range: '>=20', source: 'engines.node in package.json' });
    expect(await node({ '.nvmrc': 'v22.18.0\n' })).toEqual({ range: '22.18.0', source: '.nvmrc' });
    expect(await node({ '.nvmrc': 'lts/*' })).toEqual({ range: 'lts', source: '.nvmrc' });
    expect(await node({ '.nvmrc': 'lts/jod' })).toEqual({ range: '22.x', source: '.nvmrc' });
    expect(await node({ '.nvmrc': '20', '.node-version': '24.1' })).toEqual({
      range: '24.1',
      source: '.node-version',
    });
    expect(
      await detectError(project({ 'package.json': {}, 'index.js': '', '.nvmrc': 'lts/nope' })),
    ).toContain('.nvmrc: unknown LTS name "lts/nope"');
  });
});
