/**
 * `coderunner deployments show` with what a running app uses, against a server that runs it (local
 * sandboxes; the CLI a child process), and the one-line summary's wording for each case.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { usageLine } from '../src/commands/deployments';
import {
  appFolder,
  type CliOptions,
  type DeployServer,
  freshConfigDir,
  registerTeamAccount,
  removeTempDirs,
  runCli,
  startDeployServer,
} from './helpers';

const MB = 1024 * 1024;
let server: DeployServer;
let configDir: string;

const cli = (args: string[], extra: Partial<CliOptions> = {}) =>
  runCli(args, { configDir, apiUrl: server.url, timeoutMs: 90_000, ...extra });

beforeAll(async () => {
  server = await startDeployServer();
  configDir = freshConfigDir();
  await registerTeamAccount(server, configDir);
  expect((await cli(['projects', 'create', 'usage'])).code).toBe(0);
});
afterAll(async () => {
  await server?.close();
  removeTempDirs();
});

describe('the usage line', () => {
  const at = new Date();
  it('memory of its limit with the peak, CPU of the CPUs it may use', () => {
    expect(
      usageLine({
        at,
        memoryBytes: 41 * MB,
        memoryPeakBytes: 63 * MB,
        memoryLimitBytes: 256 * MB,
        cpu: 0.03,
        cpuSeconds: 12,
        cpus: 0.5,
      }),
    ).toBe('memory 41 MB of 256 MB (peak 63 MB) · CPU 3% of 0.5');
  });
  it('unisolated: no limits and no peak; before two samples, the CPU time so far', () => {
    expect(
      usageLine({
        at,
        memoryBytes: 41 * MB,
        memoryPeakBytes: null,
        memoryLimitBytes: null,
        cpu: null,
        cpuSeconds: 1.25,
        cpus: null,
      }),
    ).toBe('memory 41 MB · CPU time 1.3 s (no limits: unisolated)');
  });
});

describe('deployments show', () => {
  it('prints the usage of a running deployment (and --json has it); none once stopped', async () => {
    const app = appFolder({
      'package.json': JSON.stringify({ scripts: { start: 'node server.js' } }),
      'server.js': `require('http').createServer((q, r) => r.end('hi')).listen(process.env.PORT, '127.0.0.1');`,
    });
    const deployed = await cli(['deploy', app, '--project', 'usage', '--json']);
    expect(deployed.code, deployed.stderr).toBe(0);
    const { id } = (deployed.json() as { deployment: { id: string } }).deployment;
    const isolated = server.server.deps.system?.isolation === 'sandbox';

    // By a prefix (found through the list, then fetched for its usage).
    const shown = await cli(['deployments', 'show', id.slice(0, 8)]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(
      isolated
        ? /\nusage +memory \d+ MB of \d+ MB \(peak \d+ MB\) · CPU (time [\d.]+ s|(<1|\d+)% of [\d.]+)\n/
        : /\nusage +memory \d+ MB · CPU (time [\d.]+ s|(<1|\d+)%) \(no limits: unisolated\)\n/,
    );
    const json = (await cli(['deployments', 'show', id, '--json'])).json() as {
      usage: { memoryBytes: number; memoryLimitBytes: number | null; at: string };
    };
    expect(json.usage.memoryBytes).toBeGreaterThan(5 * MB);
    expect(typeof json.usage.at).toBe('string');
    if (isolated) expect(json.usage.memoryLimitBytes).toBeGreaterThan(0);

    expect((await cli(['deployments', 'stop', id])).code).toBe(0);
    const stopped = await cli(['deployments', 'show', id]);
    expect(stopped.stdout).not.toMatch(/\nusage /);
    expect((await cli(['deployments', 'show', id, '--json'])).json()).toMatchObject({ usage: null });
  }, 180_000);
});
