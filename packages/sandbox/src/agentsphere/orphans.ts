import { SandboxError, type SandboxInfo, type SandboxProvider } from '../types';
import { describeError } from './errors';

/**
 * Kills the sandboxes whose deployment is no longer wanted (e.g. DESTROYED, FAILED or unknown to the
 * database): leftovers of a worker that died between creating a sandbox and recording it, or of a cleanup
 * that failed. `isWanted` decides; when it throws, the sweep stops there and rethrows (nothing is
 * killed on a guess). Sandboxes without a deploymentId are never touched. Works with any provider.
 *
 * Returns the ids killed. A kill that fails does not stop the sweep; afterwards one SandboxError names
 * every sandbox that could not be killed (the next sweep tries again).
 */
export async function sweepOrphans(
  provider: SandboxProvider,
  isWanted: (info: SandboxInfo) => Promise<boolean>,
): Promise<string[]> {
  const killed: string[] = [];
  const failures: string[] = [];
  for (const info of await provider.list()) {
    if (!info.metadata.deploymentId || (await isWanted(info))) continue;
    try {
      if (await provider.kill(info.id)) killed.push(info.id);
    } catch (err) {
      failures.push(`${info.id} (${describeError(err)})`);
    }
  }
  if (failures.length > 0) {
    const done = killed.length > 0 ? `; killed ${killed.join(', ')}` : '';
    throw new SandboxError(`could not kill orphan sandboxes ${failures.join(', ')}${done}`);
  }
  return killed;
}
