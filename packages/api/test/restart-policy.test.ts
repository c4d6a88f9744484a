import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { portListenedOn } from '../src/deployments/failure-details';
import { LogStore } from '../src/deployments/log-store';
import {
  backoffFor,
  DEFAULT_RESTARTS,
  describeExit,
  describeWindow,
  restartPolicyOf,
  restartState,
  wantsRestart,
} from '../src/deployments/restart-policy';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-restart-policy-'));
const logs = new LogStore(dir);
afterAll(async () => {
  await logs.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const restart = (n: number, delayMs = 1000) =>
  ({ type: 'restart', n, exitCode: 1, signal: null, oomLimitMb: null, delayMs }) as const;

describe('the restart policy', () => {
  it('restarts crashes on-failure, every exit with always, none with never', () => {
    const crash = { exitCode: 1, signal: null };
    const clean = { exitCode: 0, signal: null };
    const oom = { exitCode: null, signal: 'SIGKILL', outOfMemory: { limitMb: 256 } };
    expect([crash, clean, oom].map((e) => wantsRestart('on-failure', e))).toEqual([true, false, true]);
    expect([crash, clean, oom].map((e) => wantsRestart('always', e))).toEqual([true, true, true]);
    expect([crash, clean, oom].map((e) => wantsRestart('never', e))).toEqual([false, false, false]);
    expect(describeExit(oom)).toBe('ran out of memory (limit 256 MB) and was killed');
    expect(describeExit(crash)).toBe('exited with code 1');
    expect(describeExit({ exitCode: null, signal: 'SIGSEGV' })).toBe('was killed by SIGSEGV');
  });

  it('backs off 1, 2, 4, 8, 16, then 30 s; the manifest overrides the limit', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map((n) => backoffFor(n, DEFAULT_RESTARTS.backoffMs))).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000,
    ]);
    expect(restartPolicyOf({}, DEFAULT_RESTARTS)).toEqual({
      policy: 'on-failure',
      maxExits: 5,
      windowMs: 600_000,
    });
    expect(
      restartPolicyOf({ restart: 'always', restartLimit: { exits: 2, withinMinutes: 1 } }, DEFAULT_RESTARTS),
    ).toEqual({ policy: 'always', maxExits: 2, windowMs: 60_000 });
    expect([describeWindow(600_000), describeWindow(60_000), describeWindow(3_600_000)]).toEqual([
      '10 minutes',
      '1 minute',
      '1 hour',
    ]);
  });

  it('counts the restart events of the window from the log, since the owner last started it', async () => {
    const id = 'c0ffee00-0000-4000-8000-000000000001';
    logs.append(id, 'system', 'info', 'restart 1', restart(1));
    logs.append(id, 'system', 'info', 'running again', { type: 'running', url: 'http://x/' });
    logs.append(id, 'app', 'stdout', 'some output');
    expect(await restartState(logs, id, 600_000)).toEqual({ recent: 1, pending: null });
    logs.append(id, 'system', 'info', 'restart 2', restart(2, 2000));
    const state = await restartState(logs, id, 600_000);
    expect(state.recent).toBe(2);
    expect(state.pending).toMatchObject({ n: 2, delayMs: 2000 });
    // Outside the window: not counted (read as if 11 minutes later).
    expect((await restartState(logs, id, 600_000, Date.now() + 11 * 60_000)).recent).toBe(0);
    logs.append(id, 'system', 'info', 'failed', { type: 'failed', reason: 'r' });
    logs.append(id, 'system', 'info', 'started again', { type: 'start' });
    expect(await restartState(logs, id, 600_000)).toEqual({ recent: 0, pending: null });
  });
});

describe('where an app says it listens', () => {
  it('finds another port in dev servers’ lines, colours and all', () => {
    expect(
      portListenedOn(['  ➜  Local:   \x1b[36mhttp://localhost:\x1b[1m5173\x1b[22m/\x1b[39m'], 35331),
    ).toBe(5173);
    expect(portListenedOn(['Server listening on port 3000'], 35331)).toBe(3000);
    expect(portListenedOn([' * Running on http://127.0.0.1:5000'], 35331)).toBe(5000);
    expect(portListenedOn(['listening on 0.0.0.0:35331'], 35331)).toBeNull();
    expect(portListenedOn(['GET /api 200 12ms', 'connected to db'], 35331)).toBeNull();
  });
});
