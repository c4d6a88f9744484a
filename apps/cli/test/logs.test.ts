/**
 * coderunner logs: the history ends by itself; --follow goes on until Ctrl-C and survives a server
 * restart without losing or repeating a line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appFolder,
  type CliOptions,
  closedPort,
  type DeployServer,
  freshConfigDir,
  registerTeamAccount,
  removeTempDirs,
  runCli,
  runInPty,
  startCli,
  startDeployServer,
} from './helpers';

let server: DeployServer;
let configDir: string;
let id: string;

const cli = (args: string[], extra: Partial<CliOptions> = {}) =>
  runCli(args, { configDir, apiUrl: server.url, timeoutMs: 60_000, ...extra });

/** Appends to the deployment's log through the running server, as its build or app would. */
const append = (text: string) => server.server.deps.deployments!.logs.append(id, 'app', 'stdout', text);

beforeAll(async () => {
  // A replaced deployment stops 1 s after its successor runs (the last test).
  server = await startDeployServer({ CODERUNNER_REDEPLOY_DRAIN_S: '1' });
  configDir = freshConfigDir();
  await registerTeamAccount(server, configDir);
  expect((await cli(['projects', 'create', 'logs'])).code).toBe(0);
  const app = appFolder({
    'coderunner.json': JSON.stringify({ start: 'node app.js' }),
    'app.js': `console.log('app started');
require('http').createServer((q, s) => s.end('ok')).listen(process.env.PORT, '127.0.0.1');`,
  });
  const r = await cli(['deploy', app, '--project', 'logs', '--json']);
  expect(r.code, r.stderr).toBe(0);
  id = r.json().deployment.id;
});
afterAll(async () => {
  await server?.close();
  removeTempDirs();
});

const parse = (stdout: string) =>
  stdout
    .trimEnd()
    .split('\n')
    .map(
      (l) =>
        JSON.parse(l) as {
          id: number;
          time: string;
          source: string;
          stream: string;
          text: string;
          event?: { type: string; url?: string };
        },
    );

describe('logs', () => {
  it('without --follow: the history, then it ends; --json is NDJSON; --tail n keeps the last n', async () => {
    const r = await cli(['logs', id.slice(0, 8)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d system queued \(/);
    expect(r.stdout).toMatch(/ system running at http:\/\/.*\n/);

    const json = await cli(['logs', id.slice(0, 8), '--json']);
    const events = parse(json.stdout);
    expect(events).toHaveLength(lines.length);
    for (const e of events) {
      // `event`: on the system lines code reads (queued, running, …), never on the app's.
      expect(Object.keys(e)).toEqual([
        'id',
        'time',
        'source',
        'stream',
        'text',
        ...(e.event ? ['event'] : []),
      ]);
      if (e.event) expect(e.source).toBe('system');
      expect(e.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(['system', 'build', 'app']).toContain(e.source);
    }
    expect(events.map((e) => e.id)).toEqual(events.map((_, i) => events[0]!.id + i));
    expect(events[0]!.event).toEqual({ type: 'queued' });
    const running = events.find((e) => e.event?.type === 'running')!;
    expect(running.text).toContain(`running at ${running.event?.url} `);

    const tail = await cli(['logs', id, '--tail', '2', '--json']);
    expect(parse(tail.stdout)).toEqual(events.slice(-2));

    for (const bad of ['0', 'x', '10001']) {
      const r2 = await cli(['logs', id, '--tail', bad]);
      expect(r2.code, bad).toBe(2);
    }
    const none = await cli(['logs', '0000']);
    expect(none.code).toBe(1);
    expect(none.stderr).toBe('error: no deployment matches "0000"\n');
    const down = await cli(['logs', id, '--follow'], { apiUrl: `http://127.0.0.1:${await closedPort()}` });
    expect(down.code).toBe(4);
  });

  it('--follow: history, then live lines; across a server restart it resumes after the last line (none lost, none twice); Ctrl-C exits 0', async () => {
    const live = startCli(['logs', id.slice(0, 8), '--follow', '--json'], { configDir, apiUrl: server.url });
    await live.waitFor(({ stdout }) => stdout.includes('running at'));
    for (const i of [1, 2, 3]) append(`before the restart ${i}`);
    await live.waitFor(({ stdout }) => stdout.includes('before the restart 3'));

    // The stream is cut; the CLI reconnects to the new server on the same port. Lines written while
    // no server answers (by the old one's log store: a worker process writes the same files) and
    // right after the restart, before the CLI is back, reach it only by resuming from its last line.
    await server.restart(async () => {
      await live.waitFor(({ stderr }) => stderr.includes('connection to the server lost; reconnecting…'));
      append('while the server is down');
    });
    for (const i of [1, 2, 3]) append(`after the restart ${i}`);
    await live.waitFor(({ stdout }) => stdout.includes('after the restart 3'), 30_000);
    append('live again');
    await live.waitFor(({ stdout }) => stdout.includes('live again'));

    live.child.kill('SIGINT');
    const r = await live.result;
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('connection to the server lost; reconnecting…');
    expect(r.stderr).toContain('reconnected; resuming after the last line');
    expect(r.stderr).not.toContain('error');

    const events = parse(r.stdout);
    // every line once, in order: consecutive ids from the first to the last
    expect(events.map((e) => e.id)).toEqual(events.map((_, i) => events[0]!.id + i));
    const texts = events.map((e) => e.text);
    for (const text of [
      'before the restart 1',
      'before the restart 2',
      'before the restart 3',
      'while the server is down',
      'after the restart 1',
      'after the restart 2',
      'after the restart 3',
      'live again',
    ]) {
      expect(
        texts.filter((t) => t === text),
        text,
      ).toHaveLength(1);
    }
    expect(texts.indexOf('while the server is down')).toBe(texts.indexOf('before the restart 3') + 1);
    expect(texts.indexOf('after the restart 1')).toBe(texts.indexOf('while the server is down') + 1);

    // The same log, read afterwards from the new server, is exactly what the follow printed.
    const history = parse((await cli(['logs', id, '--json'])).stdout);
    expect(history.slice(history.findIndex((e) => e.id === events[0]!.id))).toEqual(events);
  });

  it('--follow on a terminal: Ctrl-C ends it with exit 0 and no error', async () => {
    const pty = runInPty(['logs', id.slice(0, 8), '--follow', '--tail', '3'], {
      configDir,
      apiUrl: server.url,
    });
    append('shown on the terminal');
    await pty.waitFor('shown on the terminal');
    pty.type('\u0003');
    expect(await pty.exit).toBe(0);
    expect(pty.output).not.toContain('error');
  });

  it("an app's colours reach a terminal and never a pipe; other escape sequences reach neither", async () => {
    const esc = '\u001b';
    append(`${esc}[32mgreen${esc}[39m ${esc}[2Kcleared ${esc}[1;31mbold red${esc}[0m`);
    const piped = await cli(['logs', id, '--tail', '1']);
    expect(piped.code, piped.stderr).toBe(0);
    expect(piped.stdout).toMatch(/ app {4}green cleared bold red\n$/);
    expect(piped.stdout).not.toContain(esc);
    expect(piped.stdout).not.toContain('\\x1b');

    const pty = runInPty(['logs', id, '--tail', '1'], { configDir, apiUrl: server.url });
    expect(await pty.exit).toBe(0);
    // The app's own codes pass, reset at the line's end; the erase-line code does not.
    expect(pty.output).toContain(`${esc}[32mgreen${esc}[39m cleared ${esc}[1;31mbold red${esc}[0m${esc}[0m`);
    expect(pty.output).not.toContain(`${esc}[2K`);

    const noColour = runInPty(['logs', id, '--tail', '1'], {
      configDir,
      apiUrl: server.url,
      env: { NO_COLOR: '1' },
    });
    expect(await noColour.exit).toBe(0);
    expect(noColour.output).toContain('green cleared bold red');
    expect(noColour.output).not.toContain(`${esc}[32m`);
  });

  // Last: it replaces the deployment the tests above follow.
  it('--follow ends when its deployment is replaced; --project --follow moves on to the new release', async () => {
    const opts = { configDir, apiUrl: server.url };
    const single = startCli(['logs', id, '--follow'], opts);
    const project = startCli(['logs', '--project', 'logs', '--follow', '--tail', '1'], opts);
    await project.waitFor(({ stderr }) => stderr.includes(`following deployment ${id.slice(0, 8)}`));
    await single.waitFor(({ stdout }) => stdout.includes('running at'));
    const v2app = appFolder({
      'coderunner.json': JSON.stringify({ start: 'node app.js' }),
      'app.js': `console.log('v2 started');
require('http').createServer((q, s) => s.end('ok')).listen(process.env.PORT, '127.0.0.1');`,
    });
    const r = await cli(['deploy', v2app, '--project', 'logs', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const v2 = r.json().deployment.id as string;

    const ended = await single.result; // by itself, once the old one has drained and stopped
    expect(ended.code, ended.stderr).toBe(0);
    expect(ended.stderr).toContain(
      `deployment ${id.slice(0, 8)} was replaced by ${v2.slice(0, 8)} and stopped: its log ends here`,
    );
    await project.waitFor(
      ({ stdout, stderr }) =>
        stderr.includes(`following deployment ${v2.slice(0, 8)}`) && stdout.includes('v2 started'),
      60_000,
    );
    expect(project.stderr).toContain(`deployment ${id.slice(0, 8)} was replaced by ${v2.slice(0, 8)}`);
    project.child.kill('SIGINT');
    expect((await project.result).code).toBe(0);

    const bad = await cli(['logs', id, '--project', 'logs']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('name a deployment, or a project with --project (not both)');
  }, 120_000);
});
