import fs from 'node:fs';
import path from 'node:path';
import { type DeploymentStatus, QueryTypes, type Sequelize } from '@coderunner/db';
import {
  type BuildPlan,
  detectRuntime,
  extractTarGz,
  type Sandbox,
  SandboxNotFoundError,
  type SandboxProvider,
  waitForApp,
} from '@coderunner/sandbox';
import type pg from 'pg';
import { ACTIVE_STATUSES, STATUS_CHANNEL, setFields, transition } from './lifecycle';
import type { LogStore } from './log-store';
import { type DeploymentRow, deploymentColumns } from './row';
import { readFilesForUpload, type SourceStore } from './source-store';

export const PENDING_CHANNEL = 'coderunner_deployments_pending';

export interface EngineLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** What the engine needs to give a deployment a database (issue: per-deployment databases). */
export interface DatabaseHooks {
  /** Provision during PROVISIONING; returns the id to record, the sealed box, and the app's env. */
  provision(d: { id: string; projectId: string }): Promise<{
    dbSandboxId: string;
    sealed: Record<string, unknown>;
    env: Record<string, string>;
  }>;
  /** The app's env for an existing database (start after stop, restore). */
  envFor(d: { id: string; dbConnectionInfo: Record<string, unknown> }): Promise<Record<string, string>>;
  destroy(d: { id: string; dbSandboxId: string }): Promise<void>;
}

export interface EngineOptions {
  sequelize: Sequelize;
  provider: SandboxProvider;
  logs: LogStore;
  sources: SourceStore;
  /** Folder for scratch space (archives are unpacked here before upload to the sandbox). */
  workDir: string;
  /** The public URL of a deployment's app, derived from its id (never changes once recorded). */
  publicUrlFor(deploymentId: string, sandbox: Sandbox, port: number): string;
  /** The port the app listens on inside its sandbox. */
  appPort(plan: BuildPlan): Promise<number>;
  concurrency: number;
  installTimeoutMs: number;
  buildTimeoutMs: number;
  startTimeoutMs: number;
  /** A PROVISIONING/BUILDING row whose heartbeat is older than this belongs to a dead worker. */
  stuckAfterMs: number;
  /** How many times a deployment whose worker died is retried before it is FAILED. */
  maxRetries: number;
  reconcileIntervalMs: number;
  /** A sandbox younger than this is never swept as an orphan (its row may not be written yet). Default 60 s. */
  orphanGraceMs?: number;
  database?: DatabaseHooks;
  logger: EngineLogger;
  /** A dedicated connection for LISTEN (not from the pool). */
  listen?: () => Promise<pg.Client>;
}

const ROW_COLUMNS = deploymentColumns();

class DeploymentFailure extends Error {}
/** The deployment moved on (stopped, destroyed) while we worked: stop quietly and clean up. */
class LostRace extends Error {}

export class DeploymentEngine {
  private readonly inFlight = new Map<string, AbortController>();
  /** Apps we started in this process: id → internal URL (the local proxy's routing table). */
  private readonly apps = new Map<string, { internalUrl: string; sandboxId: string }>();
  /** Sandboxes of apps started by an earlier server process whose output this process follows. */
  private readonly followed = new Set<string>();
  private running = false;
  private wake: (() => void)[] = [];
  private loops: Promise<void>[] = [];
  private timers: NodeJS.Timeout[] = [];
  private listener: pg.Client | undefined;
  private firstReconcile = true;
  private readonly retries = new Map<string, number>();

  constructor(private readonly opts: EngineOptions) {}

  get provider(): SandboxProvider {
    return this.opts.provider;
  }

  /** Start the workers, the LISTEN wake-ups and the reconciler. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.connectListener();
    for (let i = 0; i < this.opts.concurrency; i++) this.loops.push(this.workLoop());
    await this.reconcile().catch((err) => this.opts.logger.error({ err }, 'reconcile failed'));
    this.timers.push(
      setInterval(() => {
        this.reconcile().catch((err) => this.opts.logger.error({ err }, 'reconcile failed'));
      }, this.opts.reconcileIntervalMs),
    );
  }

  /** LISTEN for queued deployments; reconnects (every 2 s) after the database went away. */
  private async connectListener(): Promise<void> {
    if (!this.opts.listen || !this.running) return;
    let client: pg.Client;
    try {
      client = await this.opts.listen();
      await client.query(`LISTEN ${PENDING_CHANNEL}`);
    } catch (err) {
      this.opts.logger.warn({ err }, 'cannot LISTEN for new deployments; polling until it can');
      this.retryListen();
      return;
    }
    this.listener = client;
    client.on('notification', () => this.poke());
    const lost = () => {
      if (this.listener !== client) return;
      this.listener = undefined;
      client.end().catch(() => {});
      this.retryListen();
      this.poke(); // something may have been queued meanwhile
    };
    client.on('error', lost);
    client.on('end', lost);
  }

  private retryListen(): void {
    if (!this.running) return;
    const t = setTimeout(() => void this.connectListener(), 2_000);
    t.unref();
    this.timers.push(t);
  }

  /** Stop claiming work; deployments in flight are abandoned to the reconciler (of this or another replica). */
  async stop(): Promise<void> {
    this.running = false;
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    for (const c of this.inFlight.values()) c.abort();
    this.poke();
    await Promise.allSettled(this.loops);
    this.loops = [];
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => {});
  }

  /** Wake idle workers (a deployment was queued). */
  poke(): void {
    for (const w of this.wake.splice(0)) w();
  }

  private async workLoop(): Promise<void> {
    while (this.running) {
      let claimed: DeploymentRow | null = null;
      try {
        claimed = await this.claim();
      } catch (err) {
        this.opts.logger.error({ err }, 'cannot claim deployments');
      }
      if (claimed) {
        await this.process(claimed);
        continue;
      }
      await new Promise<void>((resolve) => {
        this.wake.push(resolve);
        setTimeout(resolve, 2_000).unref();
      });
    }
  }

  /** PENDING → PROVISIONING for the oldest unclaimed row; SKIP LOCKED lets any number of replicas share the table. */
  async claim(): Promise<DeploymentRow | null> {
    const rows = await this.opts.sequelize.query<DeploymentRow>(
      `WITH next AS (
         SELECT id FROM deployments WHERE status = 'PENDING'
         ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
       )
       UPDATE deployments d SET status = 'PROVISIONING' FROM next WHERE d.id = next.id
       RETURNING ${deploymentColumns('d')}`,
      { type: QueryTypes.SELECT },
    );
    const row = rows[0];
    if (row) {
      await this.opts.sequelize.query(`SELECT pg_notify('${STATUS_CHANNEL}', :payload)`, {
        replacements: { payload: `${row.id}:PROVISIONING:${row.projectId}` },
      });
    }
    return row ?? null;
  }

  private log(id: string, text: string): void {
    this.opts.logs.append(id, 'system', 'info', text);
  }

  /** Run one claimed deployment to RUNNING, or to FAILED with the reason in its log. */
  async process(row: DeploymentRow): Promise<void> {
    const { id } = row;
    const abort = new AbortController();
    this.inFlight.set(id, abort);
    const heartbeat = setInterval(
      () => {
        setFields(this.opts.sequelize, id, ['PROVISIONING', 'BUILDING'], {}).catch(() => {});
      },
      Math.max(1_000, Math.floor(this.opts.stuckAfterMs / 4)),
    );
    let sandbox: Sandbox | undefined;
    let scratch: string | undefined;
    const started = Date.now();
    // Destroy or shutdown: kill the sandbox at once so a running install or build ends now.
    abort.signal.addEventListener('abort', () => void sandbox?.kill().catch(() => {}), { once: true });
    try {
      // Unpack and read the source first: its manifest may ask for a database.
      scratch = fs.mkdtempSync(path.join(this.opts.workDir, `${id}-`));
      await extractTarGz(await this.opts.sources.read(id), scratch).catch((err: Error) => {
        throw new DeploymentFailure(`cannot unpack the stored source: ${err.message}`);
      });
      const options = this.opts.sources.readOptions(id);
      const plan = await detectRuntime(scratch, options.runtime).catch((err: Error) => {
        throw new DeploymentFailure(err.message);
      });
      await setFields(this.opts.sequelize, id, ['PROVISIONING'], { runtimeType: plan.runtime });

      this.log(id, `runtime ${plan.runtime}: provisioning a sandbox`);
      sandbox = await this.opts.provider.create({
        metadata: { deploymentId: id, projectId: row.projectId, role: 'app' },
      });
      if (!(await setFields(this.opts.sequelize, id, ['PROVISIONING'], { appSandboxId: sandbox.id })))
        throw new LostRace();

      let env: Record<string, string> = {};
      if (row.dbSandboxId && row.dbConnectionInfo) {
        if (!this.opts.database)
          throw new DeploymentFailure('this server has no database provider configured');
        env = await this.opts.database.envFor({ id, dbConnectionInfo: row.dbConnectionInfo });
      } else if (options.database === 'postgres' || plan.database === 'postgres') {
        if (!this.opts.database)
          throw new DeploymentFailure('this server has no database provider configured');
        this.log(id, 'provisioning a PostgreSQL database');
        const db = await this.opts.database
          .provision({ id, projectId: row.projectId })
          .catch((err: Error) => {
            throw new DeploymentFailure(`cannot provision the database: ${err.message}`);
          });
        const recorded = await setFields(this.opts.sequelize, id, ['PROVISIONING'], {
          dbSandboxId: db.dbSandboxId,
          dbConnectionInfo: db.sealed,
        });
        if (!recorded) {
          await this.opts.database.destroy({ id, dbSandboxId: db.dbSandboxId }).catch(() => {});
          throw new LostRace();
        }
        env = db.env;
        this.log(id, 'database ready: DATABASE_URL and PG* variables are set for the app');
      }
      if (abort.signal.aborted) throw new LostRace();

      if (!(await transition(this.opts.sequelize, id, ['PROVISIONING'], 'BUILDING'))) throw new LostRace();
      this.log(id, 'uploading the source to the sandbox');
      await sandbox.writeFiles(await readFilesForUpload(scratch));
      fs.rmSync(scratch, { recursive: true, force: true });
      scratch = undefined;

      const appEnv = { ...plan.env, ...env };
      for (const [step, command, timeoutMs] of [
        ['install', plan.install, this.opts.installTimeoutMs],
        ['build', plan.build, this.opts.buildTimeoutMs],
      ] as const) {
        if (!command) continue;
        if (abort.signal.aborted) throw new LostRace();
        this.log(id, `${step}: ${command}`);
        const out = this.opts.logs.writer(id, 'build', 'stdout');
        const err = this.opts.logs.writer(id, 'build', 'stderr');
        const result = await sandbox
          .run(command, { envs: appEnv, timeoutMs, onStdout: out.write, onStderr: err.write })
          .catch((e: Error) => {
            throw new DeploymentFailure(`${step} failed: ${e.message}`);
          })
          .finally(() => {
            out.flush();
            err.flush();
          });
        if (result.exitCode !== 0)
          throw new DeploymentFailure(`${step} failed: \`${command}\` exited with code ${result.exitCode}`);
      }

      if (abort.signal.aborted) throw new LostRace();
      const port = await this.opts.appPort(plan);
      this.log(id, `starting: ${plan.start} (PORT=${port})`);
      const app = await this.startApp(id, sandbox, plan.start, port, appEnv);
      await this.waitReady(sandbox, app.internalUrl, port, plan.healthcheckPath, abort.signal).catch(
        (e: Error) => {
          throw abort.signal.aborted ? new LostRace() : new DeploymentFailure(e.message);
        },
      );

      const publicUrl = this.opts.publicUrlFor(id, sandbox, port);
      this.apps.set(id, { internalUrl: app.internalUrl, sandboxId: sandbox.id });
      if (!(await transition(this.opts.sequelize, id, ['BUILDING'], 'RUNNING', { publicUrl })))
        throw new LostRace();
      this.retries.delete(id);
      this.log(id, `running at ${publicUrl} (ready in ${((Date.now() - started) / 1000).toFixed(1)} s)`);
    } catch (err) {
      this.apps.delete(id);
      if (sandbox) await sandbox.kill().catch(() => {});
      if (err instanceof LostRace || abort.signal.aborted) {
        if (!this.running) {
          // Shutting down: queue it again for the next worker (here after a restart, or another replica).
          if (
            await transition(this.opts.sequelize, id, ['PROVISIONING', 'BUILDING'], 'PENDING', {
              appSandboxId: null,
            }).catch(() => false)
          ) {
            this.log(id, 'the server shut down during the build; it will be built again');
          }
        } else {
          this.log(id, 'the deployment changed while it was being built; stopped building');
          await setFields(this.opts.sequelize, id, ['PROVISIONING', 'BUILDING'], {
            appSandboxId: null,
          }).catch(() => {});
        }
      } else {
        const reason =
          err instanceof DeploymentFailure ? err.message : `internal error: ${(err as Error).message}`;
        if (!(err instanceof DeploymentFailure))
          this.opts.logger.error({ err, deploymentId: id }, 'deployment failed');
        this.log(id, `FAILED: ${reason}`);
        await this.fail(id, ['PROVISIONING', 'BUILDING']);
      }
    } finally {
      clearInterval(heartbeat);
      if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
      this.inFlight.delete(id);
    }
  }

  private async startApp(
    id: string,
    sandbox: Sandbox,
    command: string,
    port: number,
    envs: Record<string, string>,
  ) {
    const out = this.opts.logs.writer(id, 'app', 'stdout');
    const err = this.opts.logs.writer(id, 'app', 'stderr');
    return sandbox.startApp({
      command,
      port,
      envs,
      onStdout: out.write,
      onStderr: err.write,
      onExit: ({ exitCode, signal }) => {
        out.flush();
        err.flush();
        this.appExited(id, sandbox.id, exitCode, signal).catch((e) =>
          this.opts.logger.warn({ err: e, deploymentId: id }, 'cannot record that the app exited'),
        );
      },
    });
  }

  /**
   * Ready when the app accepts a TCP connection on its port, or answers its healthcheck path with
   * 2xx/3xx. Locally we probe 127.0.0.1 directly; in a cloud sandbox the probe runs inside the
   * sandbox (its public host always accepts connections: the ingress does), and a healthcheck goes
   * through the public host.
   */
  private async waitReady(
    sandbox: Sandbox,
    internalUrl: string,
    port: number,
    healthcheckPath: string | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    const timeoutMs = this.opts.startTimeoutMs;
    if (this.opts.provider.name === 'local') {
      const url = new URL(internalUrl);
      await waitForApp({
        host: url.hostname,
        port: Number(url.port || port),
        healthcheckPath,
        timeoutMs,
        isAlive: () => sandbox.isAppRunning(),
        signal,
      });
      return;
    }
    const deadline = Date.now() + timeoutMs;
    const notReady = () =>
      new Error(
        `the app did not ${healthcheckPath ? `answer ${healthcheckPath}` : `listen on port ${port}`} within ${Math.round(timeoutMs / 1000)} s`,
      );
    if (!healthcheckPath) {
      const tries = Math.max(1, Math.ceil(timeoutMs / 200));
      const probe = `for i in $(seq 1 ${tries}); do (echo > /dev/tcp/127.0.0.1/${port}) 2>/dev/null && exit 0; sleep 0.2; done; exit 1`;
      const result = await sandbox.run(`bash -c '${probe}'`, { timeoutMs: timeoutMs + 5_000 });
      if (result.exitCode !== 0) throw notReady();
      return;
    }
    while (Date.now() < deadline && !signal.aborted) {
      if (!(await sandbox.isAppRunning())) throw new Error(`the app exited before listening on port ${port}`);
      const res = await fetch(new URL(healthcheckPath, internalUrl), {
        redirect: 'manual',
        signal: AbortSignal.timeout(5_000),
      }).catch(() => null);
      if (res && res.status >= 200 && res.status < 400) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw notReady();
  }

  /**
   * Re-attach to an app started by an earlier server process: its new output goes to the deployment's
   * log again, and its exit fails the deployment as for an app started here.
   */
  private async followAdoptedApp(id: string, sandbox: Sandbox): Promise<void> {
    const out = this.opts.logs.writer(id, 'app', 'stdout');
    const err = this.opts.logs.writer(id, 'app', 'stderr');
    const followed = await sandbox
      .followApp({
        onStdout: out.write,
        onStderr: err.write,
        onExit: ({ exitCode, signal }) => {
          out.flush();
          err.flush();
          this.followed.delete(sandbox.id);
          this.appExited(id, sandbox.id, exitCode, signal).catch((e) =>
            this.opts.logger.warn({ err: e, deploymentId: id }, 'cannot record that the app exited'),
          );
        },
      })
      .catch((e: unknown) => {
        this.opts.logger.warn({ err: e, deploymentId: id }, 'cannot follow the app after a restart');
        return false;
      });
    if (!followed) return;
    this.followed.add(sandbox.id);
    this.log(id, "the server restarted; following the app's output again");
  }

  /** The app of a RUNNING (or still starting) deployment exited on its own: FAILED, with its last output kept in the log. */
  private async appExited(id: string, sandboxId: string, exitCode: number | null, signal: string | null) {
    const how = signal
      ? `was killed by ${signal}`
      : exitCode === null
        ? 'exited'
        : `exited with code ${exitCode}`;
    const current = this.apps.get(id);
    if (current && current.sandboxId !== sandboxId) return;
    this.apps.delete(id);
    if (this.inFlight.has(id)) return; // still starting: readiness reports it
    const [row] = await this.opts.sequelize.query<{ app_sandbox_id: string | null; status: string }>(
      'SELECT status, app_sandbox_id FROM deployments WHERE id = :id',
      { type: QueryTypes.SELECT, replacements: { id } },
    );
    if (row?.status !== 'RUNNING' || row.app_sandbox_id !== sandboxId) return;
    this.log(id, `FAILED: the app ${how}`);
    await this.opts.provider.kill(sandboxId).catch(() => false);
    await this.fail(id, ['RUNNING']);
  }

  private async fail(id: string, from: DeploymentStatus[]): Promise<void> {
    await transition(this.opts.sequelize, id, from, 'FAILED', { appSandboxId: null }).catch((err) =>
      this.opts.logger.error({ err, deploymentId: id }, 'cannot record FAILED'),
    );
  }

  /** Where the local proxy should send a request for this deployment's public URL. */
  async resolveApp(id: string): Promise<string | null> {
    const known = this.apps.get(id);
    if (known) return known.internalUrl;
    const [row] = await this.opts.sequelize.query<{ app_sandbox_id: string | null }>(
      `SELECT app_sandbox_id FROM deployments WHERE id = :id AND status = 'RUNNING'`,
      { type: QueryTypes.SELECT, replacements: { id } },
    );
    if (!row?.app_sandbox_id) return null;
    try {
      const sandbox = await this.opts.provider.connect(row.app_sandbox_id);
      const app = await sandbox.getApp();
      if (!app) return null;
      this.apps.set(id, { internalUrl: app.internalUrl, sandboxId: sandbox.id });
      return app.internalUrl;
    } catch {
      return null;
    }
  }

  /** RUNNING → STOPPED: the app and its sandbox go; source and database stay for `start`. */
  async stopDeployment(row: { id: string; appSandboxId: string | null }): Promise<boolean> {
    if (!(await transition(this.opts.sequelize, row.id, ['RUNNING'], 'STOPPED', { appSandboxId: null })))
      return false;
    this.apps.delete(row.id);
    if (row.appSandboxId) await this.opts.provider.kill(row.appSandboxId);
    this.log(row.id, 'stopped');
    return true;
  }

  /** Any → DESTROYED: sandboxes, database, stored source and log removed. Idempotent. */
  async destroyDeployment(row: DeploymentRow): Promise<void> {
    const moved = await transition(
      this.opts.sequelize,
      row.id,
      ['PENDING', 'PROVISIONING', 'BUILDING', 'RUNNING', 'STOPPED', 'FAILED'],
      'DESTROYED',
      { appSandboxId: null, dbSandboxId: null, dbConnectionInfo: null },
    );
    this.inFlight.get(row.id)?.abort();
    this.apps.delete(row.id);
    if (row.appSandboxId) await this.opts.provider.kill(row.appSandboxId);
    // A sandbox created but not yet recorded: found by its metadata.
    for (const s of await this.opts.provider.list({ metadata: { deploymentId: row.id } }).catch(() => [])) {
      await this.opts.provider.kill(s.id);
    }
    if (row.dbSandboxId && this.opts.database)
      await this.opts.database.destroy({ id: row.id, dbSandboxId: row.dbSandboxId });
    this.opts.sources.remove(row.id);
    if (moved) await this.opts.logs.remove(row.id);
  }

  /**
   * Repairs what dead workers and restarts leave behind:
   * - PROVISIONING/BUILDING rows without a heartbeat: sandbox killed, retried (or FAILED after retries);
   * - RUNNING rows whose sandbox or app is gone: after a restart, rebuilt from the stored source;
   *   later, FAILED (the app died while no process of ours watched it);
   * - sandboxes whose deployment does not want them: killed;
   * - RUNNING sandboxes of cloud providers: kept alive.
   */
  async reconcile(): Promise<void> {
    const { sequelize, provider } = this.opts;
    const firstPass = this.firstReconcile;
    this.firstReconcile = false;

    const stuck = await sequelize.query<DeploymentRow>(
      `SELECT ${ROW_COLUMNS} FROM deployments
       WHERE status IN ('PROVISIONING', 'BUILDING') AND updated_at < now() - make_interval(secs => :secs)`,
      { type: QueryTypes.SELECT, replacements: { secs: this.opts.stuckAfterMs / 1000 } },
    );
    for (const row of stuck) {
      if (this.inFlight.has(row.id)) continue;
      if (row.appSandboxId) await provider.kill(row.appSandboxId).catch(() => false);
      const attempts = (this.retries.get(row.id) ?? 0) + 1;
      this.retries.set(row.id, attempts);
      if (attempts <= this.opts.maxRetries) {
        if (await transition(sequelize, row.id, [row.status], 'PENDING', { appSandboxId: null })) {
          this.log(row.id, 'the worker building this deployment stopped; building it again');
          await this.notifyPending();
        }
      } else if (await transition(sequelize, row.id, [row.status], 'FAILED', { appSandboxId: null })) {
        this.log(row.id, 'FAILED: the worker building this deployment stopped, repeatedly');
      }
    }

    const running = await sequelize.query<DeploymentRow>(
      `SELECT ${ROW_COLUMNS} FROM deployments WHERE status = 'RUNNING'`,
      {
        type: QueryTypes.SELECT,
      },
    );
    for (const row of running) {
      if (this.inFlight.has(row.id) || !row.appSandboxId) continue;
      let alive = false;
      let sandbox: Sandbox | undefined;
      try {
        sandbox = await provider.connect(row.appSandboxId);
        alive = await sandbox.isAppRunning();
      } catch (err) {
        if (!(err instanceof SandboxNotFoundError)) continue; // provider unreachable: try again later
      }
      if (alive) {
        if (provider.name !== 'local') await sandbox?.keepAlive(5 * 60_000).catch(() => {});
        // An app that kept running while this server restarted: its output and exit reach us again.
        if (sandbox && !this.followed.has(sandbox.id)) await this.followAdoptedApp(row.id, sandbox);
        continue;
      }
      if (firstPass && provider.name === 'local') {
        // After a restart (or a host reboot) local apps are gone: bring them back from their source.
        await provider.kill(row.appSandboxId).catch(() => false);
        if (await transition(sequelize, row.id, ['RUNNING'], 'PENDING', { appSandboxId: null })) {
          this.log(row.id, 'the app was not running after a restart; starting it again from its source');
          await this.notifyPending();
        }
      } else {
        const tail = (await this.opts.logs.read(row.id, null, 5)).map((l) => l.text);
        await provider.kill(row.appSandboxId).catch(() => false);
        if (await transition(sequelize, row.id, ['RUNNING'], 'FAILED', { appSandboxId: null })) {
          this.log(
            row.id,
            sandbox
              ? 'FAILED: the app is no longer running'
              : 'FAILED: the sandbox running the app no longer exists',
          );
          if (tail.length) this.log(row.id, `last output: ${tail.join(' | ')}`);
        }
      }
    }

    await this.sweepOrphans();
  }

  private async notifyPending(): Promise<void> {
    await this.opts.sequelize.query(`SELECT pg_notify('${PENDING_CHANNEL}', '')`);
    this.poke();
  }

  /** Kill sandboxes whose deployment is gone, settled, or recorded with another sandbox. */
  private async sweepOrphans(): Promise<void> {
    const { sequelize, provider } = this.opts;
    const sandboxes = await provider.list().catch(() => []);
    const graceMs = this.opts.orphanGraceMs ?? 60_000;
    for (const s of sandboxes) {
      if (s.metadata.role !== 'app') continue;
      const deploymentId = s.metadata.deploymentId;
      if (deploymentId && this.inFlight.has(deploymentId)) continue;
      if (s.startedAt && Date.now() - s.startedAt.getTime() < graceMs) continue;
      const [row] = await sequelize.query<{ status: string; appSandboxId: string | null }>(
        `SELECT status, app_sandbox_id AS "appSandboxId" FROM deployments WHERE id::text = :id`,
        { type: QueryTypes.SELECT, replacements: { id: deploymentId ?? '' } },
      );
      const wanted =
        row && ACTIVE_STATUSES.includes(row.status as DeploymentStatus) && row.appSandboxId === s.id;
      if (!wanted) {
        await provider.kill(s.id).catch(() => false);
        this.opts.logger.info({ sandboxId: s.id, deploymentId }, 'killed an orphan sandbox');
      }
    }
  }

  async waitIdle(): Promise<void> {
    while (this.inFlight.size) await new Promise((r) => setTimeout(r, 50));
  }
}
