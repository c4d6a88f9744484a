/**
 * The build pipeline of one claimed deployment: PROVISIONING (source unpacked, sandbox and database
 * created) → BUILDING (source uploaded, install, build, app started and ready) → RUNNING. A failure
 * at any step leaves FAILED with the reason in the deployment's log, and the sandbox killed.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  type BuildPlan,
  CommandTimeoutError,
  detectRuntime,
  extractTarGz,
  type NodeChoice,
  NodeVersionError,
  type Sandbox,
} from '@coderunner/sandbox';
import * as deployments from '../tables/deployments';
import * as projects from '../tables/projects';
import { dependencyFacts, useBuildCache } from './build-cache';
import {
  type BuildPolicy,
  type EngineOptions,
  markFailed,
  systemEvent,
  systemFailure,
  systemLog,
} from './context';
import { databaseRefusal } from './database-hooks';
import { notReadyReason, outputDetails } from './failure-details';
import { setFields, transition } from './lifecycle';
import type { Releases } from './releases';
import { DEFAULT_RESTARTS, restartPolicyOf } from './restart-policy';
import type { DeploymentRow } from './row';
import { readFilesForUpload } from './source-store';
import { staticTarget } from './static-sites';
import type { AppSupervisor } from './supervision';

/**
 * A reason the user can act on: it goes to the deployment's log as "FAILED: <message>", and with
 * `details` (the output lines that explain it) into the `failed` event's reason.
 */
class DeploymentFailure extends Error {
  readonly details: string[];
  constructor(message: string, details: string[] = []) {
    super(message);
    this.details = details;
  }
}
/** The deployment moved on (stopped, destroyed) while we worked: stop quietly and clean up. */
class LostRace extends Error {}

export interface BuildContext {
  opts: EngineOptions;
  apps: AppSupervisor;
  releases: Releases;
  /** Aborted by destroy or shutdown. */
  signal: AbortSignal;
  /** False once this process is shutting down. */
  running: () => boolean;
}

/** Run one claimed deployment to RUNNING, or to FAILED with the reason in its log. */
export async function buildDeployment(ctx: BuildContext, row: DeploymentRow): Promise<void> {
  const { opts, signal } = ctx;
  const { id } = row;
  const started = Date.now();
  let sandbox: Sandbox | undefined;
  let scratch: string | undefined;
  let releaseBuild = () => {};
  // Destroy or shutdown: kill the sandbox at once so a running install or build ends now.
  signal.addEventListener('abort', () => void sandbox?.kill().catch(() => {}), { once: true });
  const checkpoint = () => {
    if (signal.aborted) throw new LostRace();
  };
  try {
    // Unpack and read the source first: its manifest may ask for a database.
    scratch = fs.mkdtempSync(path.join(opts.workDir, `${id}-`));
    const plan = await unpack(opts, id, scratch);
    const snapshot = environmentSnapshot(opts, id);
    const node = await chooseNode(opts, id, plan, signal);
    const framework = plan.framework ? ` (${plan.framework})` : '';
    systemLog(opts, id, `runtime ${plan.runtime}${framework}: provisioning a sandbox`);
    sandbox = await opts.provider.create({
      metadata: { deploymentId: id, projectId: row.projectId, role: 'app' },
      ...(node?.dir ? { node: node.dir } : {}),
    });
    // A cloud sandbox must outlive an install and build longer than its timeout: kept alive meanwhile.
    releaseBuild = ctx.apps.keeper.hold(sandbox, id, 'build');
    if (!(await setFields(opts.sequelize, id, ['PROVISIONING'], { appSandboxId: sandbox.id })))
      throw new LostRace();
    const dbEnv = await provisionDatabase(opts, row, plan);
    checkpoint();
    // The manifest's, then the deployment's variables (project + overrides), then the platform's.
    const appEnv = { ...plan.env, ...snapshot, ...dbEnv };
    const port = plan.static ? 0 : await opts.appPort(plan);
    // What the app will need (the local provider: its network) comes up while the build goes on.
    if (!plan.static) sandbox.prepareApp?.({ port, envs: appEnv }).catch(() => {});

    if (!(await transition(opts.sequelize, id, ['PROVISIONING'], 'BUILDING'))) throw new LostRace();
    systemLog(opts, id, 'uploading the source to the sandbox');
    await sandbox.writeFiles(await readFilesForUpload(scratch));
    const facts = dependencyFacts(scratch);
    fs.rmSync(scratch, { recursive: true, force: true });
    scratch = undefined;

    const policy = await buildPolicy(opts, row.projectId);
    const release = await waitForBuildSlot(opts, id, signal);
    try {
      // The time limit counts from the slot: waiting for one is not the tenant's compute.
      const deadline = Date.now() + policy.timeLimitMs;
      const cache = await useBuildCache(opts, id, row.projectId, sandbox, plan, facts, {
        fresh: opts.sources.readOptions(id).noCache === true,
        capMb: policy.cacheMb,
        envs: appEnv,
      });
      await installAndBuild(opts, id, sandbox, plan, appEnv, checkpoint, {
        skipInstall: cache?.skipInstall ?? false,
        installEnv: cache?.installEnv ?? {},
        deadline,
        policy,
      }).catch(async (err: unknown) => {
        // npm's cache and the like went into this sandbox: a failed build must not lose them.
        if (!signal.aborted) await cache?.save({ failed: true }).catch(() => {});
        throw err;
      });
      checkpoint();
      await cache?.save().catch((err: Error) => systemLog(opts, id, `build cache not kept: ${err.message}`));
    } finally {
      await release();
    }
    // The app runs within its plan's limits, whatever the build had.
    await sandbox.endBuild?.().catch((err: Error) => {
      throw new DeploymentFailure(err.message);
    });

    checkpoint();
    if (plan.static) {
      await serveStatic(ctx, row, sandbox, plan.static, started);
      return;
    }
    const start = plan.start;
    if (!start) throw new DeploymentFailure('nothing to start');
    systemLog(opts, id, `starting: ${start} (PORT=${port})`);
    const app = await ctx.apps.start(id, sandbox, {
      command: start,
      port,
      envs: appEnv,
      healthcheckPath: plan.healthcheckPath,
      policy: restartPolicyOf(plan, opts.restarts ?? DEFAULT_RESTARTS),
    });
    await sandbox
      .waitUntilReady(app, { healthcheckPath: plan.healthcheckPath, timeoutMs: opts.startTimeoutMs, signal })
      .catch(async (e: Error) => {
        if (signal.aborted) throw new LostRace();
        // What the app printed says why (a crash, or where it listened instead).
        throw new DeploymentFailure(
          await notReadyReason(opts.logs, id, port, e.message),
          await outputDetails(opts.logs, id, 'app'),
        );
      });

    const publicUrl = opts.publicUrlFor(id, sandbox, port);
    ctx.apps.register(id, app.internalUrl, sandbox.id);
    if (!(await transition(opts.sequelize, id, ['BUILDING'], 'RUNNING', { publicUrl }))) throw new LostRace();
    systemEvent(
      opts,
      id,
      { type: 'running', url: publicUrl },
      `running at ${publicUrl} (ready in ${((Date.now() - started) / 1000).toFixed(1)} s)`,
    );
    // The project URL now serves this deployment; the ones it replaced drain, then stop.
    await ctx.releases
      .retireReplaced(row.projectId)
      .catch((err) => opts.logger.warn({ err, deploymentId: id }, 'cannot retire replaced deployments'));
  } catch (err) {
    ctx.apps.forget(id);
    if (sandbox) await sandbox.kill().catch(() => {});
    if (err instanceof LostRace || signal.aborted) await abandoned(ctx, id);
    else {
      const reason =
        err instanceof DeploymentFailure ? err.message : `internal error: ${(err as Error).message}`;
      if (!(err instanceof DeploymentFailure))
        opts.logger.error({ err, deploymentId: id }, 'deployment failed');
      systemFailure(opts, id, reason, err instanceof DeploymentFailure ? err.details : []);
      await markFailed(opts, id, ['PROVISIONING', 'BUILDING']);
    }
  } finally {
    releaseBuild();
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * A static site: its files copied out of the sandbox into the data folder, the sandbox freed, and
 * the deployment RUNNING with no app process (the proxy serves the files).
 */
async function serveStatic(
  ctx: BuildContext,
  row: DeploymentRow,
  sandbox: Sandbox,
  candidates: string[],
  started: number,
): Promise<void> {
  const { opts } = ctx;
  const { id } = row;
  const sites = opts.staticSites;
  if (!sites || !sandbox.copyOut)
    throw new DeploymentFailure(
      'this is a static site (no server to start), and this server cannot serve static sites with its sandbox provider; add a "start" script that serves the files',
    );
  const has = async (relative: string) =>
    (await sandbox.run(`test -e '${relative.replaceAll("'", "'\\''")}'`, { timeoutMs: 30_000 })).exitCode ===
    0;
  const published = await sites.publish(id, sandbox, candidates, has).catch((err: Error) => {
    throw new DeploymentFailure(`cannot copy the static site out of the sandbox: ${err.message}`);
  });
  if (!published)
    throw new DeploymentFailure(
      `nothing to start: package.json has no "start" script, and the build left no ${candidates.map((d) => `${d}/`).join(', ')} folder of static files; add a "start" script, or give the folder of the built site in coderunner.json ("static": "<folder>")`,
    );
  const skipped = published.skipped.length
    ? `; left out ${published.skipped.length} links or special files (${published.skipped.slice(0, 3).join(', ')})`
    : '';
  systemLog(
    opts,
    id,
    `static site: ${published.files} files (${sizeText(published.bytes)}) from ${published.from}/, served by CodeRunner with no app process${skipped}`,
  );
  // The files are out: nothing of the sandbox is needed any more.
  await sandbox.kill().catch(() => {});
  const publicUrl = opts.publicUrlFor(id, sandbox, 0);
  ctx.apps.register(id, staticTarget(published.dir), '');
  if (!(await transition(opts.sequelize, id, ['BUILDING'], 'RUNNING', { publicUrl, appSandboxId: null })))
    throw new LostRace();
  systemEvent(
    opts,
    id,
    { type: 'running', url: publicUrl },
    `running at ${publicUrl} (ready in ${((Date.now() - started) / 1000).toFixed(1)} s)`,
  );
  await ctx.releases
    .retireReplaced(row.projectId)
    .catch((err) => opts.logger.warn({ err, deploymentId: id }, 'cannot retire replaced deployments'));
}

function sizeText(bytes: number): string {
  return bytes < 1024 * 1024 ? `${Math.ceil(bytes / 1024)} KB` : `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** The Node.js for a Node project (or any that asks for one); the log names it. */
async function chooseNode(
  opts: EngineOptions,
  id: string,
  plan: BuildPlan,
  signal: AbortSignal,
): Promise<NodeChoice | null> {
  const wanted = plan.node !== undefined || plan.runtime === 'nodejs' || plan.runtime === 'static';
  if (!opts.nodeVersions || !wanted) return null;
  const choice = await opts.nodeVersions.choose(plan.node, signal).catch((err: Error) => {
    if (signal.aborted) throw new LostRace();
    if (err instanceof NodeVersionError) throw new DeploymentFailure(err.message);
    throw new DeploymentFailure(`cannot get the Node.js version to use: ${err.message}`);
  });
  systemLog(opts, id, choice.line);
  return choice;
}

/** The stored source, unpacked into `scratch`, and how to run it. */
async function unpack(opts: EngineOptions, id: string, scratch: string): Promise<BuildPlan> {
  await extractTarGz(await opts.sources.read(id), scratch).catch((err: Error) => {
    throw new DeploymentFailure(`cannot unpack the stored source: ${err.message}`);
  });
  const plan = await detectRuntime(scratch, opts.sources.readOptions(id).runtime).catch((err: Error) => {
    throw new DeploymentFailure(err.message);
  });
  await setFields(opts.sequelize, id, ['PROVISIONING'], { runtimeType: plan.runtime });
  return plan;
}

/** The deployment's environment snapshot; the log names the variables, never their values. */
function environmentSnapshot(opts: EngineOptions, id: string): Record<string, string> {
  let env: Record<string, string>;
  try {
    env = opts.sources.readEnv(id);
  } catch (err) {
    // SecretBoxError messages name key ids, never values.
    throw new DeploymentFailure(
      `cannot read the deployment's environment variables: ${(err as Error).message}`,
    );
  }
  const names = Object.keys(env).sort();
  if (names.length) systemLog(opts, id, `environment variables: ${names.join(', ')} (values not shown)`);
  return env;
}

/**
 * The database's variables for the app. A project has one database, which every deployment of it
 * that asks for one gets: the first creates it, each later one (deploy, redeploy, rollback, start)
 * takes it over from the deployment that held it (db_sandbox_id moved onto its own row, the
 * credentials sealed for it; the one before keeps its credentials while it drains). Decided with the project's row locked, so that two
 * deployments of one project building at once cannot both create one.
 */
async function provisionDatabase(
  opts: EngineOptions,
  row: DeploymentRow,
  plan: BuildPlan,
): Promise<Record<string, string>> {
  const { id, projectId } = row;
  const { sequelize } = opts;
  const wanted =
    opts.sources.readOptions(id).database === 'postgres' ||
    plan.database === 'postgres' ||
    row.dbSandboxId !== null ||
    row.dbConnectionInfo !== null;
  if (!wanted) return {};
  // A deployment queued before the refusal at deploy time (or a project's database made then).
  const refusal = databaseRefusal(opts.provider);
  if (refusal) throw new DeploymentFailure(refusal);
  const hooks = opts.database;
  if (!hooks) throw new DeploymentFailure('this server has no database provider configured');
  let handedOver = false;
  const env = await sequelize.transaction(async (transaction) => {
    // A deployment of the same project may be creating the database meanwhile (a cluster's start:
    // seconds on a busy machine): wait for it rather than fail at the pool's statement timeout.
    await sequelize.query("SET LOCAL statement_timeout = '180s'", { transaction });
    if (!(await projects.lock(sequelize, projectId, transaction))) throw new LostRace();
    const held = await deployments.projectDatabase(sequelize, projectId, transaction);
    if (held?.id === id) return hooks.envFor({ id, dbConnectionInfo: held.dbConnectionInfo });
    if (held) {
      let sealed: Record<string, unknown>;
      try {
        sealed = hooks.handOver(held, id);
      } catch (err) {
        // SecretBoxError messages name key ids, never values.
        throw new DeploymentFailure(
          `cannot read the project's database credentials: ${(err as Error).message}`,
        );
      }
      const move = { from: held.id, to: id, dbSandboxId: held.dbSandboxId, sealed };
      if (!(await deployments.handOverDatabase(sequelize, move, ['PROVISIONING'], transaction)))
        throw new LostRace();
      systemLog(
        opts,
        id,
        `using the project's database (until now with deployment ${held.id}): DATABASE_URL and PG* variables are set for the app`,
      );
      handedOver = true;
      return hooks.envFor({ id, dbConnectionInfo: sealed });
    }
    systemLog(opts, id, "provisioning a PostgreSQL database (the project's, kept across releases)");
    const db = await hooks.provision({ id, projectId }).catch((err: Error) => {
      throw new DeploymentFailure(`cannot provision the database: ${err.message}`);
    });
    const fields = { dbSandboxId: db.dbSandboxId, dbConnectionInfo: db.sealed };
    if (!(await setFields(sequelize, id, ['PROVISIONING'], fields, transaction))) {
      await hooks.destroy({ id, dbSandboxId: db.dbSandboxId }).catch(() => {});
      throw new LostRace();
    }
    systemLog(opts, id, 'database ready: DATABASE_URL and PG* variables are set for the app');
    return db.env;
  });
  if (handedOver && hooks.backup) await backupBeforeRelease(opts, id, projectId, hooks.backup);
  return env;
}

/**
 * A release about to run new code on the project's data (it may migrate it on start) backs the data
 * up first, while the release before still serves. A backup that fails does not hold the release back
 * (a full disk must not block a fix): the log says so.
 */
async function backupBeforeRelease(
  opts: EngineOptions,
  id: string,
  projectId: string,
  backup: NonNullable<NonNullable<EngineOptions['database']>['backup']>,
): Promise<void> {
  systemLog(opts, id, "backing up the project's database before this release");
  try {
    const taken = await backup(projectId, 'release');
    if (taken) {
      systemLog(
        opts,
        id,
        `database backed up as ${taken.id} (${(taken.sizeBytes / 1024 / 1024).toFixed(1)} MB): \`coderunner db restore <project> ${taken.id}\` brings this data back`,
      );
    }
  } catch (err) {
    systemLog(
      opts,
      id,
      `the backup before this release failed (${(err as Error).message}); deploying anyway`,
    );
  }
}

/** The project's build policy (its owner's plan), or the engine's own timeouts when none is wired. */
async function buildPolicy(opts: EngineOptions, projectId: string): Promise<BuildPolicy> {
  if (opts.buildPolicy) return opts.buildPolicy(projectId);
  return { plan: 'free', timeLimitMs: opts.installTimeoutMs + opts.buildTimeoutMs, cacheMb: 1024 };
}

/** A slot of the machine's build queue; the log says when and why the build waits. */
async function waitForBuildSlot(
  opts: EngineOptions,
  id: string,
  signal: AbortSignal,
): Promise<() => Promise<void>> {
  const queue = opts.buildQueue;
  if (!queue) return async () => {};
  const asked = Date.now();
  let waited = false;
  const release = await queue
    .acquire({
      label: id,
      signal,
      onWait: ({ ahead, slots }) => {
        waited = true;
        systemLog(
          opts,
          id,
          `waiting for a build slot: ${ahead} build${ahead === 1 ? '' : 's'} ahead (${slots} slot${slots === 1 ? '' : 's'} on this machine, all in use)`,
        );
      },
    })
    .catch((err: unknown) => {
      if (signal.aborted) throw new LostRace();
      throw err;
    });
  if (waited) systemLog(opts, id, `got a build slot after ${((Date.now() - asked) / 1000).toFixed(1)} s`);
  return release;
}

async function installAndBuild(
  opts: EngineOptions,
  id: string,
  sandbox: Sandbox,
  plan: BuildPlan,
  envs: Record<string, string>,
  checkpoint: () => void,
  limits: { skipInstall: boolean; installEnv: Record<string, string>; deadline: number; policy: BuildPolicy },
): Promise<void> {
  for (const [step, command, stepTimeoutMs] of [
    ['install', limits.skipInstall ? undefined : plan.install, opts.installTimeoutMs],
    ['build', plan.build, opts.buildTimeoutMs],
  ] as const) {
    if (!command) continue;
    checkpoint();
    const left = limits.deadline - Date.now();
    const timeLimit = () =>
      new DeploymentFailure(
        `build time limit reached: install and build may take ${formatMinutes(limits.policy.timeLimitMs)} on the ${limits.policy.plan} plan (\`${command}\` was stopped)`,
        [],
      );
    if (left <= 0) throw timeLimit();
    const byPlan = left < stepTimeoutMs;
    const timeoutMs = Math.max(1, Math.min(left, stepTimeoutMs));
    systemLog(opts, id, `${step}: ${command}`);
    const out = opts.logs.writer(id, 'build', 'stdout');
    const err = opts.logs.writer(id, 'build', 'stderr');
    const result = await sandbox
      .run(command, {
        // The tenant's own variables win over the cache's hints.
        envs: step === 'install' ? { ...limits.installEnv, ...envs } : envs,
        timeoutMs,
        onStdout: out.write,
        onStderr: err.write,
      })
      .catch(async (e: Error) => {
        out.flush();
        err.flush();
        if (e instanceof CommandTimeoutError && byPlan) {
          const failure = timeLimit();
          throw new DeploymentFailure(failure.message, await outputDetails(opts.logs, id, 'build'));
        }
        throw new DeploymentFailure(
          `${step} failed: ${e.message}`,
          await outputDetails(opts.logs, id, 'build'),
        );
      })
      .finally(() => {
        out.flush();
        err.flush();
      });
    if (result.exitCode !== 0)
      throw new DeploymentFailure(
        `${step} failed: \`${command}\` exited with code ${result.exitCode}`,
        await outputDetails(opts.logs, id, 'build'),
      );
  }
}

function formatMinutes(ms: number): string {
  const minutes = ms / 60_000;
  return minutes >= 1 ? `${Number(minutes.toFixed(1))} min` : `${Math.round(ms / 1000)} s`;
}

/** The build stopped because the deployment moved on, or because this process is shutting down. */
async function abandoned(ctx: BuildContext, id: string): Promise<void> {
  const { opts } = ctx;
  if (!ctx.running()) {
    // Shutting down: queue it again for the next worker (here after a restart, or another replica).
    const requeued = await transition(opts.sequelize, id, ['PROVISIONING', 'BUILDING'], 'PENDING', {
      appSandboxId: null,
    }).catch(() => null);
    if (requeued) systemLog(opts, id, 'the server shut down during the build; it will be built again');
    return;
  }
  systemLog(opts, id, 'the deployment changed while it was being built; stopped building');
  await setFields(opts.sequelize, id, ['PROVISIONING', 'BUILDING'], { appSandboxId: null }).catch(() => {});
}
