/**
 * `coderunner deploy` to a server that runs apps without isolation warns in one line first. (A file
 * of its own: its server runs in this test process, and a process holds one server's models.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appFolder,
  type DeployServer,
  freshConfigDir,
  registerTeamAccount,
  removeTempDirs,
  runCli,
  startDeployServer,
} from './helpers';

let server: DeployServer;
beforeAll(async () => {
  server = await startDeployServer({ CODERUNNER_ISOLATION: 'none' });
});
afterAll(async () => {
  await server?.close();
  removeTempDirs();
});

describe('deploying to a server without isolation', () => {
  it('warns in one line, then deploys', async () => {
    const dir = freshConfigDir();
    await registerTeamAccount(server, dir);
    const opts = { configDir: dir, apiUrl: server.url, timeoutMs: 90_000 };
    expect((await runCli(['projects', 'create', 'open'], opts)).code).toBe(0);
    const app = appFolder({
      'coderunner.json': JSON.stringify({ start: 'node server.js' }),
      'server.js':
        "require('http').createServer((q, s) => s.end('open')).listen(process.env.PORT, '127.0.0.1');",
    });
    const there = await runCli(['deploy', app, '--project', 'open', '--detach'], opts);
    expect(there.code, there.stderr).toBe(0);
    const lines = there.stderr.split('\n').filter((l) => l.includes('without isolation'));
    expect(lines).toEqual([
      'warning: this server runs deployed apps without isolation (CODERUNNER_ISOLATION=none): other apps on it can read and change yours',
    ]);
    expect((await runCli(['deployments', 'destroy', there.stdout.trim(), '--yes'], opts)).code).toBe(0);
  });
});
