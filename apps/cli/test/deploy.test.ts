/**
 * deploy, deployments, db credentials and open against a server that really runs deployments (local
 * sandboxes): the CLI is a child process, the apps are reached with curl at their public URLs.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appFolder,
  type CliOptions,
  curl,
  type DeployServer,
  freshConfigDir,
  registerTeamAccount,
  removeTempDirs,
  runCli,
  runInPty,
  sourceCommand,
  startCli,
  startDeployServer,
  tempDir,
} from './helpers';

const run = promisify(execFile);
// The pg driver the database package uses (not a dependency of the CLI). Not @coderunner/db's
// connect(): that would bind the server's models, in this process, to the app's database.
const pg = createRequire(import.meta.resolve('@coderunner/db'))('pg') as {
  Client: new (opts: {
    connectionString: string;
  }) => {
    connect(): Promise<void>;
    on(event: 'error', listener: (err: Error) => void): void;
    query(sql: string): Promise<{ rows: Record<string, unknown>[] }>;
    end(): Promise<void>;
  };
};
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

let server: DeployServer;
let configDir: string;

const cli = (args: string[], extra: Partial<CliOptions> = {}) =>
  runCli(args, { configDir, apiUrl: server.url, timeoutMs: 90_000, ...extra });

beforeAll(async () => {
  server = await startDeployServer();
  configDir = freshConfigDir();
  await registerTeamAccount(server, configDir);
  for (const name of ['web', 'other']) expect((await cli(['projects', 'create', name])).code).toBe(0);
});
afterAll(async () => {
  await server?.close();
  removeTempDirs();
});

/** A dependency-free Node server that tells which of the uploaded files it can see. */
const NODE_APP = {
  'package.json': JSON.stringify({ name: 'hello', scripts: { start: 'node server.js' } }),
  'server.js': `const fs = require('fs');
require('http').createServer((req, res) => {
  res.end(JSON.stringify({
    hello: 'world',
    secret: fs.existsSync('secret.txt'),
    nodeModules: fs.existsSync('node_modules/left-pad/index.js'),
    nestedLog: fs.existsSync('sub/debug.log'),
    keptLog: fs.existsSync('sub/keep.log'),
    drafts: fs.existsSync('drafts/notes.md'),
  }));
}).listen(process.env.PORT, '127.0.0.1', () => console.log('listening on ' + process.env.PORT));`,
  '.gitignore': 'secret.txt\n*.log\n',
  'secret.txt': 'not for the server',
  'node_modules/left-pad/index.js': 'module.exports = 1;',
  'sub/.gitignore': '!keep.log\n',
  'sub/keep.log': 'brought back by the nested .gitignore',
  'sub/debug.log': 'x',
  '.coderunnerignore': 'drafts/\n',
  'drafts/notes.md': 'x',
};

/** No install step at all: the quickest app to bring up. */
const MANIFEST_APP = {
  'coderunner.json': JSON.stringify({ start: 'node app.js' }),
  'app.js': `require('http').createServer((q, s) => s.end('manifest app')).listen(process.env.PORT, '127.0.0.1');`,
};

const FAILING_APP = {
  'package.json': JSON.stringify({
    scripts: { build: 'echo compiling; echo "main.ts(3): cannot compile" >&2; exit 1', start: 'node x.js' },
  }),
};

const lastLine = (text: string) => text.trimEnd().split('\n').at(-1) ?? '';

async function waitForStatus(ref: string, statuses: string[], timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await cli(['deployments', 'show', ref, '--json']);
    if (statuses.includes(r.json().status)) return r.json();
    if (Date.now() > deadline) throw new Error(`${ref} is ${r.json().status}`);
    await new Promise((res) => setTimeout(res, 300));
  }
}

describe('deploy', () => {
  let deployed: { id: string; url: string };

  it('packs the folder (.gitignore at every level, .coderunnerignore, never node_modules), follows the build to RUNNING and prints the URL last', async () => {
    const dir = appFolder(NODE_APP);
    const r = await cli(['deploy', '--project', 'web'], { cwd: dir }); // the folder defaults to .
    expect(r.code, r.stderr).toBe(0);
    // stdout is the URL, alone on the last line
    const url = lastLine(r.stdout);
    expect(url).toMatch(new RegExp(`^http://${UUID}\\.localhost:${server.port}/$`));
    expect(r.stdout).toBe(`${url}\n`);
    // stderr: the upload size, the status, the build log; no colours or redraws without a terminal
    expect(r.stderr).toMatch(/^Uploading \d+(\.\d)? (B|KiB) \(\d+ files, .* unpacked\) to project web…\n/);
    expect(r.stderr).toMatch(/status: (PENDING|PROVISIONING|BUILDING)\n/);
    expect(r.stderr).toContain('system starting: npm start'); // no dependencies: no install step
    expect(r.stderr).toMatch(/system running at http:\/\//);
    expect(r.stderr).not.toContain('\u001b');

    const page = await curl(url);
    expect(page.status).toBe(200);
    expect(JSON.parse(page.body)).toEqual({
      hello: 'world',
      secret: false, // listed in .gitignore
      nodeModules: false, // never uploaded
      nestedLog: false, // *.log from the top .gitignore applies below it
      keptLog: true, // brought back by sub/.gitignore
      drafts: false, // .coderunnerignore
    });
    const id = url.slice('http://'.length, 'http://'.length + 36);
    deployed = { id, url };

    // open prints the same URL, by a prefix of the id
    const open = await cli(['open', id.slice(0, 8)]);
    expect(open.code).toBe(0);
    expect(open.stdout).toBe(`${url}\n`);
    expect(open.stderr).toBe('');
    const openJson = await cli(['open', id.slice(0, 6), '--json', '--browser']); // not a terminal: no browser
    expect(openJson.json()).toEqual({ id, status: 'RUNNING', url });
  });

  it('--json prints one document {deployment, url, upload} and nothing else', async () => {
    const r = await cli([
      'deploy',
      appFolder(MANIFEST_APP),
      '--project',
      'other',
      '--runtime',
      'manifest',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const out = r.json();
    expect(Object.keys(out)).toEqual(['deployment', 'url', 'projectUrl', 'upload']);
    expect(Object.keys(out.deployment)).toEqual([
      'id',
      'projectId',
      'status',
      'runtimeType',
      'publicUrl',
      'hasDatabase',
      'current',
      'failureReason',
      'createdAt',
      'updatedAt',
    ]);
    expect(out.deployment).toMatchObject({ status: 'RUNNING', runtimeType: 'manifest', hasDatabase: false });
    expect(out.url).toBe(out.deployment.publicUrl);
    expect(out.upload).toEqual({ files: 2, bytes: expect.any(Number) });
    expect((await curl(out.url)).body).toBe('manifest app');
    // The project URL serves the deployment just made (its project's current one).
    expect(out.deployment.current).toBe(true);
    expect(out.projectUrl).toMatch(/^http:\/\/[a-z0-9-]+-[0-9a-f]{10}\.localhost:\d+\/$/);
    expect((await curl(out.projectUrl)).body).toBe('manifest app');
  });

  it('--detach returns right after the upload with the deployment id', async () => {
    const r = await cli(['deploy', appFolder(MANIFEST_APP), '--project', 'other', '--detach']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${UUID}\n$`));
    const id = r.stdout.trim();
    expect(r.stderr).toContain(`coderunner logs ${id.slice(0, 8)} --follow`);
    expect(r.stderr).not.toContain('running at');

    const json = await cli(['deploy', appFolder(MANIFEST_APP), '--project', 'other', '--detach', '--json']);
    expect(json.code).toBe(0);
    expect(json.json()).toMatchObject({ deployment: { status: 'PENDING' }, url: null });

    for (const d of [id, json.json().deployment.id]) {
      expect((await waitForStatus(d, ['RUNNING', 'FAILED'])).status).toBe('RUNNING');
      expect((await cli(['deployments', 'destroy', d, '--yes'])).code).toBe(0);
    }
  });

  // The warning itself, from a server with CODERUNNER_ISOLATION=none: isolation-warning.test.ts.
  it('warns before deploying only when the server does not isolate apps', async () => {
    const ready = (await (await fetch(`${server.url}/readyz`)).json()) as { isolation?: string };
    const isolated = ready.isolation === 'sandbox';
    const here = await cli(['deploy', appFolder(MANIFEST_APP), '--project', 'other', '--detach']);
    expect(here.code, here.stderr).toBe(0);
    const warned = here.stderr.includes('without isolation');
    expect(warned).toBe(!isolated);

    expect((await cli(['deployments', 'destroy', here.stdout.trim(), '--yes'])).code).toBe(0);
  });

  it('a failing build: exit 1, the reason (the failed event: the step, then the output that explains it) printed, no URL; deployments show/list tell it too', async () => {
    const r = await cli(['deploy', appFolder(FAILING_APP), '--project', 'web']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('build  main.ts(3): cannot compile'); // the build log, as it came
    // The final error: the failing step, then the compiler's line from the build output under it.
    expect(r.stderr).toMatch(
      new RegExp(
        `\nerror: deployment ${UUID} FAILED: build failed: \`npm run build\` exited with code 1\n  main\\.ts\\(3\\): cannot compile\n(the project URL still serves the previous deployment ${UUID}: http://\\S+\n)?\\(the whole log: coderunner logs [0-9a-f]{8}\\)\n$`,
      ),
    );
    const id = new RegExp(`error: deployment (${UUID}) FAILED`).exec(r.stderr)![1]!;
    const shown = await cli(['deployments', 'show', id, '--json']);
    expect(shown.json().failureReason).toMatch(
      /^build failed: `npm run build` exited with code 1\nmain\.ts\(3\): cannot compile$/,
    );
    expect((await cli(['deployments', 'show', id])).stdout).toMatch(
      /\nreason +build failed: `npm run build` exited with code 1\n {10}/,
    );
    const listed = await cli(['deployments', 'list', '--project', 'web', '--json']);
    const row = (listed.json() as { id: string; failureReason: string | null }[]).find((d) => d.id === id);
    expect(row?.failureReason).toBe(shown.json().failureReason);
    expect((await cli(['deployments', 'list', '--project', 'web'])).stdout).toMatch(
      /REASON[^\n]*\n(.*\n)*.*FAILED.*build failed: `npm run build` exited with code 1/,
    );

    const json = await cli(['deploy', appFolder(FAILING_APP), '--project', 'web', '--json']);
    expect(json.code).toBe(1);
    expect(json.json()).toMatchObject({
      deployment: {
        status: 'FAILED',
        publicUrl: null,
        failureReason: expect.stringMatching(/^build failed/),
      },
      url: null,
      reason: 'build failed: `npm run build` exited with code 1\nmain.ts(3): cannot compile',
    });
    expect(json.stderr).toMatch(/^error: deployment .* FAILED: build failed/);
  });

  it('refuses what cannot be deployed: no project (exit 2), a missing folder (exit 2), an unknown project (exit 1)', async () => {
    const noProject = await cli(['deploy', appFolder(MANIFEST_APP)]);
    expect(noProject.code).toBe(2);
    expect(noProject.stderr).toMatch(/^error: which project\? pass --project <name or id>/);
    const env = await cli(['deploy', appFolder(MANIFEST_APP), '--detach'], {
      env: { CODERUNNER_PROJECT: 'other' },
    });
    expect(env.code, env.stderr).toBe(0);
    await cli(['deployments', 'destroy', env.stdout.trim(), '--yes']);

    const missing = await cli(['deploy', path.join(tempDir(), 'nope'), '--project', 'web']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^error: no such folder: /);
    const unknown = await cli(['deploy', appFolder(MANIFEST_APP), '--project', 'nope']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('error: project "nope" not found\n');
    const badRuntime = await cli(['deploy', '--project', 'web', '--runtime', 'cobol']);
    expect(badRuntime.code).toBe(2);
    // an archive the server refuses (no runtime to detect): its message, exit 1
    const empty = await cli(['deploy', tempDir(), '--project', 'web']);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/^Uploading .*\nerror: .+\n$/);
  });

  it('Ctrl-C while following: exit 130, the deployment goes on on the server', async () => {
    const slow = appFolder({
      'coderunner.json': JSON.stringify({ build: 'sleep 30', start: 'node app.js' }),
      'app.js': MANIFEST_APP['app.js'],
    });
    const live = startCli(['deploy', slow, '--project', 'other'], { configDir, apiUrl: server.url });
    await live.waitFor(({ stderr }) => stderr.includes('system build: sleep 30'));
    live.child.kill('SIGINT');
    const r = await live.result;
    expect(r.code).toBe(130);
    expect(r.stdout).toBe('');
    const id = /Deployment (\S+) queued/.exec(r.stderr)![1]!;
    expect(r.stderr).toContain(`interrupted: deployment ${id} goes on without you`);
    expect(r.stderr).not.toContain('error:');
    expect((await cli(['deployments', 'show', id, '--json'])).json().status).toBe('BUILDING');
    expect((await cli(['deployments', 'destroy', id, '--yes'])).code).toBe(0);
  });

  it('on a terminal: a live status line, redrawn in place, then the URL', async () => {
    // A build that takes a moment, so that there is a status to show before it runs.
    const app = appFolder({
      'coderunner.json': JSON.stringify({ build: 'sleep 1', start: 'node app.js' }),
      'app.js': MANIFEST_APP['app.js'],
    });
    const pty = runInPty(['deploy', app, '--project', 'other'], {
      configDir,
      apiUrl: server.url,
      timeoutMs: 60_000,
    });
    expect(await pty.exit).toBe(0);
    expect(pty.output).toContain('\r\u001b[2K'); // the status line is cleared and redrawn
    expect(pty.output).toMatch(/[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏].* \(\d+s\)/);
    const url = lastLine(pty.output.replace(/\r/g, ''));
    expect(url).toMatch(new RegExp(`^http://${UUID}\\.localhost:${server.port}/$`));
    expect((await curl(url)).body).toBe('manifest app');
  });

  describe('deployments list / show / stop / start / destroy, by id prefix', () => {
    it('list: all of them, filtered by project and status; --json', async () => {
      const all = await cli(['deployments', 'list', '--json']);
      expect(all.code).toBe(0);
      const items: { id: string; status: string; projectId: string }[] = all.json();
      expect(items.length).toBeGreaterThanOrEqual(6);
      expect(items.map((d) => d.id)).toContain(deployed.id);

      const running = await cli(['deployments', 'list', '--project', 'web', '--status', 'running', '--json']);
      expect(running.json().map((d: { id: string }) => d.id)).toEqual([deployed.id]);
      const failed = await cli(['deployments', 'ls', '--status', 'FAILED', '--json']);
      expect(failed.json()).toHaveLength(2);
      expect(failed.json().every((d: { status: string }) => d.status === 'FAILED')).toBe(true);

      const table = await cli(['deployments', 'list', '--project', 'web']);
      const lines = table.stdout.trimEnd().split('\n');
      // Its FAILED deployments (the failing build above) add the REASON column.
      expect(lines[0]).toMatch(/^ID +PROJECT +STATUS +RUNTIME +DB +CREATED +URL +REASON$/);
      const row = lines.find((l) => l.includes(deployed.url))!;
      expect(row).toMatch(new RegExp(`^${deployed.id.slice(0, 8)}[0-9a-f-]* \\* +web +RUNNING +nodejs +- +`));
      expect(table.stderr).toContain("* current: the deployment its project's URL serves");

      const bad = await cli(['deployments', 'list', '--status', 'sleeping']);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/must be one of pending, provisioning, building, running/);
    });

    it('show, and the rules for prefixes: unique → found, ambiguous → exit 2 with the candidates, none → exit 1; destroy asks on a terminal', async () => {
      const show = await cli(['deployments', 'show', deployed.id.slice(0, 5)]);
      expect(show.code).toBe(0);
      expect(show.stdout).toContain(`id        ${deployed.id}\n`);
      expect(show.stdout).toMatch(/project +web \(/);
      expect(show.stdout).toContain('status    RUNNING\n');
      expect(show.stdout).toContain(`url       ${deployed.url}\n`);
      expect(show.stdout).toContain("current   yes: its project's URL serves it\n");
      expect((await cli(['deployments', 'get', deployed.id.toUpperCase(), '--json'])).json().id).toBe(
        deployed.id,
      );

      // Two deployments whose ids share a prefix (inserted as DESTROYED records; nothing runs).
      const [[project]] = (await server.server.deps.sequelize.query(
        `SELECT p.id FROM projects p JOIN deployments d ON d.project_id = p.id WHERE d.id = :id`,
        { replacements: { id: deployed.id } },
      )) as [[{ id: string }], unknown];
      const twins = ['abcdef01-0000-4000-8000-000000000001', 'abcdef01-0000-4000-8000-000000000002'];
      for (const id of twins) {
        await server.server.deps.sequelize.query(
          `INSERT INTO deployments (id, project_id, status) VALUES (:id, :projectId, 'DESTROYED')`,
          { replacements: { id, projectId: project.id } },
        );
      }
      const ambiguous = await cli(['deployments', 'show', 'abcdef']);
      expect(ambiguous.code).toBe(2);
      expect(ambiguous.stderr).toMatch(/^error: "abcdef" matches 2 deployments; give more of the id:\n/);
      for (const id of twins) expect(ambiguous.stderr).toContain(`  ${id}  DESTROYED`);
      expect(
        (await cli(['deployments', 'show', 'abcdef01-0000-4000-8000-000000000002', '--json'])).json().id,
      ).toBe(twins[1]);
      expect((await cli(['deployments', 'show', 'ABCDEF01-0000-4000-8000-000000000001'])).code).toBe(0);

      // destroy asks on a terminal; anything but y keeps it
      const ask = runInPty(['deployments', 'destroy', 'abcdef01-0000-4000-8000-000000000001'], {
        configDir,
        apiUrl: server.url,
      });
      await ask.waitFor(`Destroy deployment ${twins[0]} (DESTROYED)? [y/N] `);
      ask.type('n\r');
      expect(await ask.exit).toBe(1);
      expect(ask.output).toContain('error: not destroyed');

      for (const ref of ['ffffffff-ffff-4fff-8fff-ffffffffffff', 'not-hex', 'abcdef02']) {
        const none = await cli(['deployments', 'show', ref]);
        expect(none.code, ref).toBe(1);
        expect(none.stderr).toBe(`error: no deployment matches "${ref}"\n`);
      }
    });

    it('stop → 503, start → RUNNING again at the same URL, destroy (asks; --yes without a terminal)', async () => {
      const prefix = deployed.id.slice(0, 7);
      const stop = await cli(['deployments', 'stop', prefix]);
      expect(stop.code, stop.stderr).toBe(0);
      expect(stop.stdout).toBe(`Stopped deployment ${deployed.id}\n`);
      expect((await curl(deployed.url)).status).toBe(503);
      const again = await cli(['deployments', 'stop', prefix]);
      expect(again.code).toBe(1);
      expect(again.stderr).toBe('error: only a RUNNING deployment can be stopped; this one is STOPPED\n');

      const start = await cli(['deployments', 'start', prefix, '--json']);
      expect(start.code, start.stderr).toBe(0);
      expect(start.json().id).toBe(deployed.id);
      // queued again; a worker may have picked it up already
      expect(['PENDING', 'PROVISIONING', 'BUILDING']).toContain(start.json().status);
      const running = await waitForStatus(prefix, ['RUNNING', 'FAILED']);
      expect(running).toMatchObject({ status: 'RUNNING', publicUrl: deployed.url });
      expect(JSON.parse((await curl(deployed.url)).body).hello).toBe('world');

      const refused = await cli(['deployments', 'destroy', prefix]);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/^error: not destroying deployment .* without confirmation: .*--yes\n$/);
      expect((await curl(deployed.url)).status).toBe(200);

      const destroyed = await cli(['deployments', 'destroy', prefix, '--yes', '--json']);
      expect(destroyed.code).toBe(0);
      expect(destroyed.json()).toMatchObject({ id: deployed.id, status: 'DESTROYED' });
      expect((await curl(deployed.url)).status).toBe(503);
      const open = await cli(['open', prefix]);
      expect(open.code).toBe(0);
      expect(open.stderr).toContain('is DESTROYED: its URL answers 503');
    });
  });
});

describe('db credentials', () => {
  it('a deployment with --database postgres: DATABASE_URL=<url> for eval (exported), --fields, --json; the URL connects', async () => {
    const r = await cli([
      'deploy',
      appFolder(MANIFEST_APP),
      '--project',
      'web',
      '--database',
      'postgres',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const { deployment } = r.json();
    expect(deployment.hasDatabase).toBe(true);
    const prefix = deployment.id.slice(0, 8);

    const line = await cli(['db', 'credentials', prefix]);
    expect(line.code, line.stderr).toBe(0);
    expect(line.stdout).toMatch(/^DATABASE_URL='?postgres(ql)?:\/\/[^\n]+'?\n$/);

    const json = await cli(['db', 'credentials', prefix, '--json']);
    const creds = json.json();
    expect(Object.keys(creds)).toEqual(['host', 'port', 'user', 'password', 'database', 'url']);
    expect(creds.url).toContain(creds.database);

    const fields = await cli(['db', 'creds', prefix, '--fields']);
    expect(fields.stdout).toContain(`host      ${creds.host}\n`);
    expect(fields.stdout).toContain(`password  ${creds.password}\n`);

    // What the help promises: eval the output in a shell; the URL it sets connects.
    const shell = await run(
      'sh',
      [
        '-c',
        `eval "$("$@" db credentials ${prefix} --export)" && sh -c 'printf %s "$DATABASE_URL"'`,
        'sh',
        ...sourceCommand(),
      ],
      { env: { ...process.env, CODERUNNER_CONFIG_DIR: configDir, CODERUNNER_API_URL: server.url } },
    );
    expect(shell.stdout).toBe(creds.url);
    const appDb = new pg.Client({ connectionString: shell.stdout });
    appDb.on('error', () => {});
    await appDb.connect();
    try {
      const { rows } = await appDb.query('SELECT current_database() AS db');
      expect(rows[0]?.db).toBe(creds.database);
    } finally {
      await appDb.end();
    }

    // A deployment without a database says so (exit 1).
    const plain = await cli(['deploy', appFolder(MANIFEST_APP), '--project', 'web', '--json']);
    const none = await cli(['db', 'credentials', plain.json().deployment.id]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/^error: this deployment has no database/);
  });
});

describe("the project's database", () => {
  it('a rollback says the data stays; db reset asks first (exit 2 without a terminal), then empties it with --yes', async () => {
    expect((await cli(['projects', 'create', 'data'])).code).toBe(0);
    const r = await cli([
      'deploy',
      appFolder(MANIFEST_APP),
      '--project',
      'data',
      '--database',
      'postgres',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const { deployment } = r.json();

    const back = await cli(['rollback', deployment.id.slice(0, 8), '--detach']);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stderr).toContain("the project's database keeps today's data (it is not rolled back)");

    const refused = await cli(['db', 'reset', 'data']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      /^error: not resetting the database of project "data" without confirmation: .*--yes\n$/,
    );

    const reset = await cli(['db', 'reset', 'data', '--yes', '--json']);
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.json()).toMatchObject({ reset: true, backupId: expect.stringMatching(/-before-reset$/) });

    // projects show: where the database runs, its size against its cap, limits, newest backup.
    const shown = await cli(['projects', 'show', 'data']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(
      /database +its own PostgreSQL, [\d.]+ MB of \d+ MB \(\d+ MB memory, [\d.]+ CPU\) · last backup \S+ \((release|before-reset), [\d.]+ MB\), \d+ kept\n/,
    );
    expect((await cli(['projects', 'show', 'data', '--json'])).json().database).toMatchObject({
      kind: 'own',
    });
  });
});

describe('open --browser on a terminal', () => {
  it('runs xdg-open with the URL; a missing xdg-open is only a warning', async () => {
    const r = await cli(['deploy', appFolder(MANIFEST_APP), '--project', 'other', '--json']);
    const { id } = r.json().deployment;
    const url = r.json().url;
    const bin = tempDir();
    const called = path.join(bin, 'called');
    fs.writeFileSync(path.join(bin, 'xdg-open'), `#!/bin/sh\necho "$1" > ${called}\n`, { mode: 0o755 });
    const withOpener = runInPty(['open', id.slice(0, 8), '--browser'], {
      configDir,
      apiUrl: server.url,
      env: { PATH: `${bin}:${process.env.PATH}` },
    });
    expect(await withOpener.exit).toBe(0);
    expect(withOpener.output).toContain(url);
    for (let i = 0; i < 50 && !fs.existsSync(called); i++) await new Promise((res) => setTimeout(res, 100));
    expect(fs.readFileSync(called, 'utf8')).toBe(`${url}\n`);

    const empty = tempDir();
    for (const tool of ['sh', 'env']) fs.symlinkSync(`/bin/${tool}`, path.join(empty, tool));
    const without = runInPty(['open', id.slice(0, 8), '--browser'], {
      configDir,
      apiUrl: server.url,
      env: { PATH: empty },
    });
    expect(await without.exit).toBe(0);
    expect(without.output).toContain(url);
    expect(without.output).toContain('could not open a browser: xdg-open is not installed');
  });

  it('releases: the project URL switches on deploy; rollback and redeploy follow to RUNNING; projects show prints the URL', async () => {
    expect((await cli(['projects', 'create', 'releases'])).code).toBe(0);
    const version = (v: string) =>
      appFolder({
        'coderunner.json': JSON.stringify({ start: 'node app.js' }),
        'app.js': `require('http').createServer((q, s) => s.end(${JSON.stringify(v)})).listen(process.env.PORT);`,
      });
    const first = await cli(['deploy', version('one'), '--project', 'releases', '--json']);
    expect(first.code, first.stderr).toBe(0);
    const one = first.json();
    expect((await curl(one.projectUrl)).body).toBe('one');

    const second = await cli(['deploy', version('two'), '--project', 'releases']);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toContain(`Project releases serves it at ${one.projectUrl}`);
    expect((await curl(one.projectUrl)).body).toBe('two');

    const shown = await cli(['projects', 'show', 'releases']);
    expect(shown.stdout).toContain(`url          ${one.projectUrl}\n`);
    const twoId = /Deployment (\S+) is running/.exec(second.stderr)![1]!;
    expect(shown.stdout).toContain(`serving      deployment ${twoId}\n`);

    const back = await cli(['rollback', one.deployment.id.slice(0, 8)]);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toMatch(new RegExp(`^http://${UUID}\\.localhost:\\d+/\n$`));
    expect(back.stderr).toContain(`Project releases serves it at ${one.projectUrl}`);
    expect((await curl(one.projectUrl)).body).toBe('one');

    // A failing new version: the old one keeps serving, and the CLI says so.
    const current = (await cli(['projects', 'show', 'releases', '--json'])).json().currentDeploymentId;
    const failing = await cli(['deploy', appFolder(FAILING_APP), '--project', 'releases']);
    expect(failing.code).toBe(1);
    expect(failing.stderr).toContain(
      `the project URL still serves the previous deployment ${current}: ${one.projectUrl}`,
    );
    expect((await curl(one.projectUrl)).body).toBe('one');
    const again = await cli(['redeploy', twoId, '--no-cache', '--detach', '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.json()).toMatchObject({ deployment: { status: 'PENDING' }, url: null, projectUrl: null });
    // --no-cache reaches the build: the project's build cache is dropped first.
    const againId = again.json().deployment.id as string;
    await waitForStatus(againId, ['RUNNING', 'FAILED'], 120_000);
    expect((await cli(['logs', againId])).stdout).toContain('build cache dropped (--no-cache)');
    const unknown = await cli(['rollback', '00000000']);
    expect(unknown.code).toBe(1);
  }, 300_000);
});
