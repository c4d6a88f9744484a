import type { DeploymentStatus, Sequelize, Transaction } from '@coderunner/db';
import type { TransitionFields, TransitionTarget } from '../tables/deployments';
import * as deployments from '../tables/deployments';
import type { DeploymentRow } from './row';

// The notification (channels, encoder, decoder) and the writes without a status change live with
// the table's SQL; they are exported here too, beside the state machine.
export {
  insertPending,
  PENDING_CHANNEL,
  parseStatusNotification,
  STATUS_CHANNEL,
  type StatusNotification,
  setFields,
  type TransitionFields,
  type TransitionTarget,
} from '../tables/deployments';

/**
 * Allowed transitions: the deployment lifecycle, whole (this table is its one statement). `start`
 * re-queues a STOPPED or FAILED deployment as PENDING so that whichever worker is free rebuilds it
 * from its stored source; the reconciler also sends a deployment back to PENDING when its worker
 * died or its local app vanished with a host reboot. RUNNING → BUILDING: its app exited and is being
 * started again in its sandbox (supervision.ts), RUNNING again once it answers.
 */
export const TRANSITIONS: Record<DeploymentStatus, readonly DeploymentStatus[]> = {
  PENDING: ['PROVISIONING', 'FAILED', 'DESTROYED'],
  PROVISIONING: ['BUILDING', 'PENDING', 'FAILED', 'DESTROYED'],
  BUILDING: ['RUNNING', 'PENDING', 'FAILED', 'DESTROYED'],
  RUNNING: ['STOPPED', 'PENDING', 'BUILDING', 'FAILED', 'DESTROYED'],
  STOPPED: ['PENDING', 'DESTROYED'],
  FAILED: ['PENDING', 'DESTROYED'],
  DESTROYED: [],
};

/** Statuses whose deployment holds (or is about to hold) a sandbox: these count against the quota. */
export const ACTIVE_STATUSES: readonly DeploymentStatus[] = [
  'PENDING',
  'PROVISIONING',
  'BUILDING',
  'RUNNING',
];

/**
 * How many of a user's deployments hold a sandbox now (what the plan's deployment quota counts). A
 * RUNNING deployment that a newer one replaced (draining) does not count, nor, with `replacing`, the
 * RUNNING deployment of that project: the deployment about to be queued there will replace it.
 */
export async function countActiveDeployments(
  sequelize: Sequelize,
  userId: string,
  transaction?: Transaction,
  replacing?: string,
): Promise<number> {
  return deployments.countActive(sequelize, userId, ACTIVE_STATUSES, transaction, replacing);
}

export function canTransition(from: DeploymentStatus, to: DeploymentStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Every status from which `to` may be reached. */
export function sourcesOf(to: DeploymentStatus): DeploymentStatus[] {
  return (Object.keys(TRANSITIONS) as DeploymentStatus[]).filter((from) => canTransition(from, to));
}

/**
 * The one place a deployment's status is written. One conditional UPDATE (deployments.moveStatus in
 * tables/deployments.ts): moves the target to `to` only if its status is one of `from` (intersected
 * with the statuses allowed to reach `to`). Returns the moved row, or null when the transition lost a
 * race (the row moved meanwhile or is gone): the caller reports it and never forces it.
 *
 * In the same statement it notifies STATUS_CHANNEL (watchers and other replicas learn at once) and,
 * for PENDING, PENDING_CHANNEL (workers wake up). In a transaction, both are delivered at commit.
 */
export async function transition(
  sequelize: Sequelize,
  target: TransitionTarget,
  from: readonly DeploymentStatus[],
  to: DeploymentStatus,
  fields: TransitionFields = {},
  transaction?: Transaction,
): Promise<DeploymentRow | null> {
  const allowed = from.filter((s) => canTransition(s, to));
  if (!allowed.length) return null;
  return deployments.moveStatus(sequelize, target, allowed, to, fields, transaction);
}
