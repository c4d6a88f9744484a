/**
 * A Node app with an npm dependency, installed and started through the local provider: as root this
 * runs npm as the sandbox user, which checks that HOME, the npm cache and app/ are writable by it.
 * Needs the npm registry (reachable from the project's machines and CI).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLocalProvider, findFreePort } from '../src/local';
import { detectRuntime } from '../src/runtime';
import {
  eventually,
  fixtureDir,
  fixtureFiles,
  isRoot,
  sandboxProcesses,
  tempRoot,
} from './fixtures/local/helpers';

const root = tempRoot('coderunner-local-npm-');

afterAll(async () => {
  await eventually(() => expect(sandboxProcesses(root.rootDir)).toEqual([]), 5_000);
  root.cleanup();
});

describe('local provider: npm', () => {
  it('installs a dependency with npm and starts the app with npm start', async () => {
    const provider = createLocalProvider({ rootDir: root.rootDir, killGraceMs: 1_000 });
    const sandbox = await provider.create({
      metadata: { deploymentId: 'd-npm', projectId: 'p-npm', role: 'app' },
    });
    try {
      await sandbox.writeFiles(fixtureFiles('node-npm'));
      const plan = await detectRuntime(fixtureDir('node-npm'));
      expect(plan).toMatchObject({
        runtime: 'nodejs',
        install: 'npm install --no-audit --no-fund',
        start: 'npm start',
      });

      const install = await sandbox.run(plan.install!, { timeoutMs: 180_000 });
      expect(install.stderr + install.stdout).not.toMatch(/EACCES/);
      expect(install.exitCode).toBe(0);
      const folder = path.join(root.rootDir, sandbox.id);
      expect(fs.existsSync(path.join(folder, 'app/node_modules/is-number/package.json'))).toBe(true);
      // npm's cache went to the sandbox's home, not the server's.
      expect(fs.existsSync(path.join(folder, 'home/.npm'))).toBe(true);
      if (isRoot) expect(fs.statSync(path.join(folder, 'app/node_modules')).uid).not.toBe(0);

      const port = await findFreePort();
      const app = await sandbox.startApp({ command: plan.start!, port, envs: plan.env });
      await sandbox.waitUntilReady(app, { timeoutMs: 30_000 });
      const body = (await (await fetch(app.internalUrl)).json()) as { isNumber: boolean; uid: number };
      expect(body.isNumber).toBe(true);
      if (isRoot) expect(body.uid).not.toBe(0);
    } finally {
      await sandbox.kill();
    }
  });
});
