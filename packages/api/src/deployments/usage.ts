/**
 * What running apps use: every 10 s, each RUNNING deployment's sandbox on this host is asked for its
 * figures (`Sandbox.usage()`: a few cgroup files), and the last hour is kept per deployment, in this
 * process's memory only (the schema is fixed, and a series is worth nothing once the app is gone).
 * Every replica on the host samples every app, so each can answer for any of them; a replica that
 * started a moment ago still answers the figures of now, read on demand.
 */
import type { Sandbox, SandboxProvider, SandboxUsage } from '@coderunner/sandbox';

export const USAGE_INTERVAL_MS = 10_000;
/** An hour of 10 s samples. */
export const USAGE_POINTS = 360;

/** One sample of a series. */
export interface UsagePoint {
  at: Date;
  memoryBytes: number;
  /** CPUs used since the sample before (0.03 = 3% of one CPU); null for the first one. */
  cpu: number | null;
}

/** A deployment's figures now, with its limits (null: unknown, e.g. unisolated apps have no limits). */
export interface UsageNow extends SandboxUsage {
  at: Date;
  /** CPUs used over the last interval sampled; null until two samples exist. */
  cpu: number | null;
}

interface Track {
  sandboxId: string;
  points: UsagePoint[];
  last: UsageNow;
}

export interface UsageSamplerOptions {
  provider: SandboxProvider;
  /** RUNNING deployments and their app's sandbox (tables/deployments.ts `runningSandboxes`). */
  running(): Promise<{ id: string; appSandboxId: string }[]>;
  intervalMs?: number;
  keep?: number;
  onError?(err: unknown): void;
}

export class UsageSampler {
  readonly intervalMs: number;
  private readonly keep: number;
  private readonly tracks = new Map<string, Track>();
  /** Sandboxes by id, connected once (a local connect reads its record file). */
  private readonly sandboxes = new Map<string, Sandbox>();
  private timer: NodeJS.Timeout | undefined;
  private sampling: Promise<void> | undefined;

  constructor(private readonly opts: UsageSamplerOptions) {
    this.intervalMs = opts.intervalMs ?? USAGE_INTERVAL_MS;
    this.keep = opts.keep ?? USAGE_POINTS;
  }

  start(): void {
    if (this.timer) return;
    const tick = () => {
      this.sample().catch((err) => this.opts.onError?.(err));
    };
    this.timer = setInterval(tick, this.intervalMs);
    this.timer.unref();
    tick();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.sampling;
    this.tracks.clear();
    this.sandboxes.clear();
  }

  /** One round over the RUNNING deployments (one at a time; a round still running is waited for, not doubled). */
  sample(): Promise<void> {
    this.sampling ??= this.round().finally(() => {
      this.sampling = undefined;
    });
    return this.sampling;
  }

  /** The deployment stopped (or failed, or was destroyed): its series goes. */
  drop(id: string): void {
    const track = this.tracks.get(id);
    if (!track) return;
    this.tracks.delete(id);
    this.sandboxes.delete(track.sandboxId);
  }

  /** The series kept for a deployment's app in `sandboxId`, oldest first (empty: none sampled yet). */
  points(id: string, sandboxId: string): UsagePoint[] {
    const track = this.tracks.get(id);
    return track?.sandboxId === sandboxId ? [...track.points] : [];
  }

  /**
   * The figures of now: the last sample when it is recent, else read from the sandbox at once (a
   * replica that has not sampled it yet); null when the provider cannot tell.
   */
  async current(id: string, sandboxId: string): Promise<UsageNow | null> {
    const track = this.tracks.get(id);
    const known = track?.sandboxId === sandboxId ? track.last : undefined;
    if (known && Date.now() - known.at.getTime() < this.intervalMs * 1.5) return known;
    const usage = await this.read(sandboxId);
    if (!usage) return null;
    const at = new Date();
    return { ...usage, at, cpu: known ? cpuRate(known, usage, at) : null };
  }

  private async round(): Promise<void> {
    const rows = await this.opts.running();
    const live = new Set(rows.map((r) => `${r.id}/${r.appSandboxId}`));
    for (const [id, track] of this.tracks) if (!live.has(`${id}/${track.sandboxId}`)) this.drop(id);
    const sandboxIds = new Set(rows.map((r) => r.appSandboxId));
    for (const id of this.sandboxes.keys()) if (!sandboxIds.has(id)) this.sandboxes.delete(id);
    for (const row of rows) {
      const usage = await this.read(row.appSandboxId);
      if (!usage) continue;
      const at = new Date();
      const track = this.tracks.get(row.id);
      const now: UsageNow = { ...usage, at, cpu: track ? cpuRate(track.last, usage, at) : null };
      const point = { at, memoryBytes: usage.memoryBytes, cpu: now.cpu };
      if (!track) {
        this.tracks.set(row.id, { sandboxId: row.appSandboxId, points: [point], last: now });
        continue;
      }
      track.points.push(point);
      if (track.points.length > this.keep) track.points.splice(0, track.points.length - this.keep);
      track.last = now;
    }
  }

  private async read(sandboxId: string): Promise<SandboxUsage | null> {
    try {
      let sandbox = this.sandboxes.get(sandboxId);
      if (!sandbox) {
        sandbox = await this.opts.provider.connect(sandboxId);
        if (!sandbox.usage) return null;
        this.sandboxes.set(sandboxId, sandbox);
      }
      return (await sandbox.usage?.()) ?? null;
    } catch {
      // Gone meanwhile (stopped, destroyed): the next round drops its series.
      this.sandboxes.delete(sandboxId);
      return null;
    }
  }
}

/** CPUs used between two readings of the cumulative CPU time. */
function cpuRate(before: UsageNow, now: SandboxUsage, at: Date): number | null {
  const seconds = (at.getTime() - before.at.getTime()) / 1000;
  if (before.cpuSeconds === null || now.cpuSeconds === null || seconds <= 0) return null;
  return Math.max(0, (now.cpuSeconds - before.cpuSeconds) / seconds);
}
