/**
 * When an app that exited on its own is started again, and when it is given up on. The count of
 * recent exits is read from the deployment's log (its `restart` events), which every replica shares
 * through the data folder and which outlives server restarts: no column, no process's memory.
 */
import type { AppExit, BuildPlan, RestartPolicy } from '@coderunner/sandbox';
import type { LogStore } from './log-store';

/** The engine's defaults (the README's "Restart policy"); the manifest may override them. */
export interface RestartDefaults {
  policy: RestartPolicy;
  /** After this many exits within `windowMs` the app goes FAILED instead. */
  maxExits: number;
  windowMs: number;
  /** Pause before the 1st, 2nd, … restart; the last one repeats. */
  backoffMs: readonly number[];
}

export const DEFAULT_RESTARTS: RestartDefaults = {
  policy: 'on-failure',
  maxExits: 5,
  windowMs: 10 * 60_000,
  backoffMs: [1_000, 2_000, 4_000, 8_000, 16_000, 30_000],
};

export interface AppRestartPolicy {
  policy: RestartPolicy;
  maxExits: number;
  windowMs: number;
}

/** The policy of an app: its manifest's fields over the engine's defaults. */
export function restartPolicyOf(
  plan: Pick<BuildPlan, 'restart' | 'restartLimit'>,
  defaults: RestartDefaults,
) {
  return {
    policy: plan.restart ?? defaults.policy,
    maxExits: plan.restartLimit?.exits ?? defaults.maxExits,
    windowMs: plan.restartLimit ? plan.restartLimit.withinMinutes * 60_000 : defaults.windowMs,
  } satisfies AppRestartPolicy;
}

/** Whether the policy restarts an app that ended this way (an exit with code 0 is no crash). */
export function wantsRestart(policy: RestartPolicy, exit: AppExit): boolean {
  if (policy === 'never') return false;
  if (policy === 'always') return true;
  return !(exit.exitCode === 0 && !exit.signal && !exit.outOfMemory);
}

/** How the app ended, for people: "exited with code 1", "ran out of memory (limit 256 MB)". */
export function describeExit(exit: AppExit): string {
  if (exit.outOfMemory) return `ran out of memory (limit ${exit.outOfMemory.limitMb} MB) and was killed`;
  if (exit.signal) return `was killed by ${exit.signal}`;
  return exit.exitCode === null ? 'exited' : `exited with code ${exit.exitCode}`;
}

/** "10 minutes", "30 seconds", "1 hour". */
export function describeWindow(ms: number): string {
  const unit = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  if (ms % 3_600_000 === 0) return unit(ms / 3_600_000, 'hour');
  if (ms % 60_000 === 0) return unit(ms / 60_000, 'minute');
  return unit(Math.round(ms / 1000), 'second');
}

export function backoffFor(n: number, backoffMs: readonly number[]): number {
  return backoffMs[Math.min(n, backoffMs.length) - 1] ?? 0;
}

export interface RestartState {
  /** Restarts within the window (since the owner last started it). */
  recent: number;
  /** The newest restart not yet followed by the app answering again (or a stop, start, failure). */
  pending: { at: Date; delayMs: number; n: number } | null;
}

/**
 * The restarts of `id` within the last `windowMs` (since its owner last started it), and the one in
 * progress if any, from the `restart` events of its log. The one typed accessor the policy, the proxy
 * (Retry-After) and the tests read.
 */
export async function restartState(
  logs: LogStore,
  id: string,
  windowMs: number,
  now = Date.now(),
): Promise<RestartState> {
  const lines = await logs.read(id, null, Number.MAX_SAFE_INTEGER).catch(() => []);
  let recent = 0;
  let pending: RestartState['pending'] = null;
  let settled = false;
  for (let i = lines.length - 1; i >= 0; i--) {
    const { event, time } = lines[i]!;
    if (!event) continue;
    if (event.type === 'start') break;
    if (event.type === 'restart') {
      if (!settled && !pending) pending = { at: time, delayMs: event.delayMs, n: event.n };
      if (now - time.getTime() <= windowMs) recent++;
    } else if (!pending) settled = true; // running, failed, stopped, queued: nothing pending
  }
  return { recent, pending };
}
