/**
 * `pnpm coderunner …` from the repository root, as the README says: no build step, the CLI's exit
 * code passes through, and with `--silent` nothing but the CLI's own output is printed (no pnpm
 * lifecycle lines such as "[ELIFECYCLE] Command failed").
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, tempDir } from './helpers';

const run = (args: string[]) =>
  spawnSync('pnpm', ['--silent', 'coderunner', ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: { ...process.env, CODERUNNER_CONFIG_DIR: tempDir('coderunner-root-cmd-'), CODERUNNER_TOKEN: '' },
    timeout: 60_000,
  });

describe('pnpm --silent coderunner', () => {
  it('prints only the CLI output on success', () => {
    const r = run(['--version']);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    expect(r.stderr).toBe('');
  });

  it('passes a failing exit code through with only the CLI message', () => {
    // Not logged in: exit 3 (see the CLI's exit codes), whatever the server address.
    const r = run(['whoami', '--api-url', 'http://127.0.0.1:1']);
    expect(r.status).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim()).toBe('error: not logged in: run coderunner login');
  });
});
