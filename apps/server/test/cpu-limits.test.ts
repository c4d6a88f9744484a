/**
 * No plan gets more CPU than the sandboxes may use together: the host's CPUs less a reserve for the
 * control plane (issue #20). A plan configured above it is clamped, and the server says so when it
 * starts.
 */
import { createTestDatabase, freePort, type TestDatabase } from '@coderunner/db/testing';
import { DEFAULT_LIMITS } from '@coderunner/sandbox';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, runtimeConfig } from '../src/config';
import { startServerProcess } from './load/fixtures/server-process';

describe('CPU by plan and the control plane reserve', () => {
  it('a plan above the host CPUs less the reserve is clamped to it, with a sentence saying so', () => {
    const config = loadConfig({ CODERUNNER_LIMITS_TEAM: '1024/512/64/4096' }, { cpus: 2 });
    expect(config.cpu).toEqual({ host: 2, reserve: 0.5, tenants: 1.5 });
    expect(config.planLimits.team).toMatchObject({ memoryMb: 1024, pids: 512, cpus: 1.5, diskMb: 4096 });
    expect(config.planLimits.free.cpus).toBe(0.5);
    expect(config.planLimits.personal.cpus).toBe(1);
    expect(config.planWarnings).toEqual([
      expect.stringMatching(
        /^CODERUNNER_LIMITS_TEAM gives a sandbox 64 CPUs.*team sandboxes get 1\.5 \(its 2 CPUs less 0\.5/,
      ),
    ]);
    // What the provider is given: the clamped plans, and the cap of all sandboxes together.
    const runtime = runtimeConfig(config);
    expect(runtime.planLimits?.team?.cpus).toBe(1.5);
    expect(runtime.tenantCpus).toBe(1.5);
  });

  it('the reserve is a quarter of the host (at least half a CPU) unless CODERUNNER_CPU_RESERVE says otherwise', () => {
    const big = loadConfig({}, { cpus: 16 });
    expect(big.cpu).toEqual({ host: 16, reserve: 4, tenants: 12 });
    expect(big.planWarnings).toEqual([]);
    expect(big.planLimits.team.cpus).toBe(2);
    const set = loadConfig({ CODERUNNER_CPU_RESERVE: '1' }, { cpus: 2 });
    expect(set.cpu.tenants).toBe(1);
    expect(set.planLimits.team.cpus).toBe(1);
    expect(set.planWarnings).toHaveLength(1);
  });

  it('a reserve that leaves the sandboxes nothing, or is not a number, is refused with a clear message', () => {
    expect(() => loadConfig({ CODERUNNER_CPU_RESERVE: '2' }, { cpus: 2 })).toThrow(
      /CODERUNNER_CPU_RESERVE: 2 leaves sandboxes less than 0\.1 of this machine's 2 CPUs/,
    );
    expect(() => loadConfig({ CODERUNNER_CPU_RESERVE: 'half' }, { cpus: 2 })).toThrow(ConfigError);
    expect(() => loadConfig({ CODERUNNER_CPU_RESERVE: 'half' }, { cpus: 2 })).toThrow(
      /CODERUNNER_CPU_RESERVE must be a number of CPUs/,
    );
  });

  it("the free plan's default limits are the sandbox's own defaults (one source)", () => {
    expect(loadConfig({}, { cpus: 64 }).planLimits.free).toEqual(DEFAULT_LIMITS);
  });
});

describe('the server says at start-up which plans it clamped', () => {
  let db: TestDatabase | undefined;
  afterAll(async () => {
    await db?.drop();
  });

  it('its log has a warning naming the variable and the CPUs the plan gets', async () => {
    db = await createTestDatabase();
    const server = await startServerProcess({
      port: await freePort(),
      env: {
        DATABASE_URL: db.url,
        WORKER_ENABLED: 'false',
        CODERUNNER_AUTH_SECRET: 'a-cpu-limits-test-secret-of-enough-length',
        CODERUNNER_LIMITS_PERSONAL: '512/256/1000/2048',
      },
    });
    try {
      // Log lines are written asynchronously: give the first ones a moment to arrive.
      const said = () => server.warnLines().map((line) => (JSON.parse(line) as { msg: string }).msg);
      for (let i = 0; i < 50 && !said().some((m) => m.includes('CODERUNNER_LIMITS_PERSONAL')); i++)
        await new Promise((resolve) => setTimeout(resolve, 100));
      expect(said()).toContainEqual(
        expect.stringMatching(/^CODERUNNER_LIMITS_PERSONAL gives a sandbox 1000 CPUs/),
      );
    } finally {
      await server.stop();
    }
  });
});

describe('build limits', () => {
  it('builds get 2 GB and 1 CPU (no more than the tenants may use), a queue sized to the machine, a time limit and a cache by plan', () => {
    const config = loadConfig({}, { cpus: 2 });
    expect(config.builds.limits).toEqual({ memoryMb: 2048, cpus: 1 });
    expect(config.builds.slots).toBeGreaterThanOrEqual(1);
    expect(config.builds.slots).toBeLessThanOrEqual(2);
    expect(config.planBuild).toEqual({
      free: { timeLimitMs: 600_000, cacheMb: 1024 },
      personal: { timeLimitMs: 1_200_000, cacheMb: 2048 },
      team: { timeLimitMs: 1_800_000, cacheMb: 4096 },
    });
    const big = loadConfig(
      {
        CODERUNNER_BUILD_LIMITS: '4096/8',
        CODERUNNER_BUILD_SLOTS: '3',
        CODERUNNER_BUILD_LIMITS_FREE: '2.5/256',
      },
      { cpus: 2 },
    );
    expect(big.builds.limits).toEqual({ memoryMb: 4096, cpus: 1.5 });
    expect(big.builds.slots).toBe(3);
    expect(big.planBuild.free).toEqual({ timeLimitMs: 150_000, cacheMb: 256 });
    expect(runtimeConfig(big).planBuild?.free).toEqual({ timeLimitMs: 150_000, cacheMb: 256 });
  });

  it('names a bad build variable with the form it takes', () => {
    expect(() => loadConfig({ CODERUNNER_BUILD_LIMITS: '2GB', CODERUNNER_BUILD_LIMITS_TEAM: '30' })).toThrow(
      /CODERUNNER_BUILD_LIMITS: CODERUNNER_BUILD_LIMITS must be MEMORY_MB\/CPUS, e\.g\. 2048\/1[\s\S]*CODERUNNER_BUILD_LIMITS_TEAM must be MINUTES\/CACHE_MB/,
    );
  });
});
