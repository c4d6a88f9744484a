/**
 * The queue: workers claim PENDING deployments (SKIP LOCKED, so replicas share the table), woken by
 * LISTEN on PENDING_CHANNEL or by a 2 s poll, and build each with a heartbeat.
 */
import { createListener, type Listener } from '@coderunner/db';
import { buildDeployment } from './build';
import type { EngineOptions } from './context';
import { PENDING_CHANNEL, setFields, transition } from './lifecycle';
import type { Releases } from './releases';
import type { DeploymentRow } from './row';
import type { AppSupervisor } from './supervision';

export class Worker {
  /** Deployments this process is building: id → abort (destroy, shutdown). */
  private readonly inFlight = new Map<string, AbortController>();
  private running = false;
  private wake: (() => void)[] = [];
  private loops: Promise<void>[] = [];
  private listener: Listener | undefined;

  constructor(
    private readonly opts: EngineOptions,
    private readonly apps: AppSupervisor,
    private readonly releases: Releases,
  ) {}

  isBuilding(id: string): boolean {
    return this.inFlight.has(id);
  }

  /** Abort the build of `id` in this process, if any (destroy). */
  abort(id: string): void {
    this.inFlight.get(id)?.abort();
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    if (this.opts.listenUrl) {
      const logger = this.opts.logger;
      this.listener = createListener({
        url: this.opts.listenUrl,
        channels: { [PENDING_CHANNEL]: () => this.poke() },
        onConnected: () => this.poke(), // something may have been queued meanwhile
        onError: (err, wasConnected) => {
          if (wasConnected)
            logger.warn({ err }, 'lost the LISTEN connection for new deployments; polling until it is back');
          else logger.debug({ err }, 'cannot LISTEN for new deployments; polling until it can');
        },
        retryMs: 2_000,
      });
      await this.listener.start();
    }
    for (let i = 0; i < this.opts.concurrency; i++) this.loops.push(this.loop());
  }

  /** Stop claiming work; deployments in flight are abandoned to the reconciler (of this or another replica). */
  async stop(): Promise<void> {
    this.running = false;
    for (const c of this.inFlight.values()) c.abort();
    this.poke();
    await Promise.allSettled(this.loops);
    this.loops = [];
    const listener = this.listener;
    this.listener = undefined;
    await listener?.close();
  }

  /** Wake idle workers (a deployment was queued). */
  poke(): void {
    for (const w of this.wake.splice(0)) w();
  }

  async waitIdle(): Promise<void> {
    while (this.inFlight.size) await new Promise((r) => setTimeout(r, 50));
  }

  private async loop(): Promise<void> {
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

  /** PENDING → PROVISIONING for the oldest deployment no other worker holds. */
  claim(): Promise<DeploymentRow | null> {
    return transition(this.opts.sequelize, { oldest: true }, ['PENDING'], 'PROVISIONING');
  }

  /** Build one claimed deployment, with a heartbeat the reconcilers of every replica can see. */
  async process(row: DeploymentRow): Promise<void> {
    const abort = new AbortController();
    this.inFlight.set(row.id, abort);
    const heartbeat = setInterval(
      () => void setFields(this.opts.sequelize, row.id, ['PROVISIONING', 'BUILDING'], {}).catch(() => {}),
      Math.max(1_000, Math.floor(this.opts.stuckAfterMs / 4)),
    );
    try {
      await buildDeployment(
        {
          opts: this.opts,
          apps: this.apps,
          releases: this.releases,
          signal: abort.signal,
          running: () => this.running,
        },
        row,
      );
    } finally {
      clearInterval(heartbeat);
      this.inFlight.delete(row.id);
    }
  }
}
