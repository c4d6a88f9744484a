/**
 * Keeps cloud sandboxes alive while this process needs them. A cloud sandbox ends `sandboxTimeoutMs`
 * after its last keep-alive (AgentSphere: 5 minutes by default), so every sandbox in use is extended
 * every third of that: while its deployment installs and builds (which may take longer than the
 * timeout), while its app runs, and while it holds a project's database. Providers whose sandboxes do
 * not expire (local) need nothing: holding is then a no-op.
 *
 * A keep-alive that fails is logged and tried again at the next tick (a third of the timeout later,
 * so two more chances before the sandbox ends). A sandbox that reached the service's maximum
 * lifetime cannot be extended: whoever holds it is told, to move to a new sandbox.
 */
import { type Sandbox, SandboxLifetimeExceededError, SandboxNotFoundError } from '@coderunner/sandbox';
import type { EngineOptions } from './context';

export type HoldPurpose = 'build' | 'app' | 'db';

interface Held {
  sandbox: Sandbox;
  deploymentId: string;
  purpose: HoldPurpose;
  onLifetimeEnd?: (err: SandboxLifetimeExceededError) => void;
}

export class SandboxKeeper {
  private readonly held = new Map<string, Held>();
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;

  constructor(private readonly opts: EngineOptions) {}

  /** How long a sandbox lives without keep-alive; undefined when sandboxes do not expire. */
  get timeoutMs(): number | undefined {
    return this.opts.provider.sandboxTimeoutMs;
  }

  /** Keeps `sandbox` alive until the returned function is called (for `purpose`; one hold per purpose). */
  hold(
    sandbox: Sandbox,
    deploymentId: string,
    purpose: HoldPurpose,
    onLifetimeEnd?: (err: SandboxLifetimeExceededError) => void,
  ): () => void {
    const timeoutMs = this.timeoutMs;
    if (!timeoutMs) return () => {};
    const key = `${purpose}:${sandbox.id}`;
    const entry: Held = { sandbox, deploymentId, purpose, onLifetimeEnd };
    this.held.set(key, entry);
    if (!this.timer) {
      this.timer = setInterval(() => void this.extendAll(), Math.max(200, Math.floor(timeoutMs / 3)));
      this.timer.unref();
    }
    return () => {
      if (this.held.get(key) === entry) this.held.delete(key);
      if (this.held.size === 0) this.stop();
    };
  }

  /** Whether this process keeps `sandboxId` alive (for any purpose, or the one given). */
  holds(sandboxId: string, purpose?: HoldPurpose): boolean {
    if (purpose) return this.held.has(`${purpose}:${sandboxId}`);
    return [...this.held.values()].some((h) => h.sandbox.id === sandboxId);
  }

  /** Sandbox ids held for `purpose`. */
  heldFor(purpose: HoldPurpose): string[] {
    return [...this.held.values()].filter((h) => h.purpose === purpose).map((h) => h.sandbox.id);
  }

  release(sandboxId: string, purpose: HoldPurpose): void {
    this.held.delete(`${purpose}:${sandboxId}`);
    if (this.held.size === 0) this.stop();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One keep-alive per held sandbox (several holds of one sandbox share it). */
  async extendAll(): Promise<void> {
    const timeoutMs = this.timeoutMs;
    if (!timeoutMs || this.ticking) return;
    this.ticking = true;
    try {
      const bySandbox = new Map<string, Held[]>();
      for (const h of this.held.values())
        bySandbox.set(h.sandbox.id, [...(bySandbox.get(h.sandbox.id) ?? []), h]);
      await Promise.all([...bySandbox.values()].map((holds) => this.extend(holds, timeoutMs)));
    } finally {
      this.ticking = false;
    }
  }

  private async extend(holds: Held[], timeoutMs: number): Promise<void> {
    const [first] = holds;
    if (!first) return;
    const { sandbox } = first;
    const fields = { sandboxId: sandbox.id, deploymentId: first.deploymentId };
    try {
      await sandbox.keepAlive(timeoutMs);
    } catch (err) {
      if (err instanceof SandboxLifetimeExceededError) {
        this.opts.logger.warn({ ...fields, err }, 'the sandbox reached its maximum lifetime');
        for (const h of holds) {
          this.held.delete(`${h.purpose}:${sandbox.id}`);
          h.onLifetimeEnd?.(err);
        }
      } else if (err instanceof SandboxNotFoundError) {
        // Gone: whoever follows it (the app's exit, the reconciler) reports it.
        this.opts.logger.warn(fields, 'a sandbox in use no longer exists');
        for (const h of holds) this.held.delete(`${h.purpose}:${sandbox.id}`);
      } else {
        this.opts.logger.warn({ ...fields, err }, 'cannot keep the sandbox alive; trying again');
      }
    }
  }
}
