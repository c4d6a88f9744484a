/**
 * When a follow of a deployment's log ends: once the deployment will write no more (STOPPED, FAILED,
 * DESTROYED or gone), its followers get the lines still written about it, then one last event that
 * says why (`LogBatch.end`), and the stream closes, instead of waiting on a dead deployment forever.
 * Both ways of following (the procedure's generator and the lean HTTP path) end through here.
 */
import type { Context } from './context';
import type { LogBatch, LogEnd, LogStore } from './deployments/log-store';
import type { DeploymentRow } from './deployments/row';
import { StatusWatch } from './deployments/status-watch';
import * as deployments from './tables/deployments';

/** Lines per history event of deployments.logs. */
export const LOG_PAGE_LINES = 1000;

/**
 * After a final status is seen, how long lines about it (the stop, the failure and its reason, the
 * app's last output) may still arrive before the follow ends; those written later are read back
 * from the log before the end event, so none is lost.
 */
const END_GRACE_MS = 1_000;

const FINAL = new Set(['STOPPED', 'FAILED', 'DESTROYED']);

/** One status feed per deployment for all its watchers in this process (see StatusWatch). */
const statusWatches = new WeakMap<object, StatusWatch<DeploymentRow>>();
export function statusWatch(ctx: Context): StatusWatch<DeploymentRow> {
  const d = ctx.deps.deployments!;
  let watch = statusWatches.get(d);
  if (!watch) {
    const { sequelize } = ctx.deps;
    // The watcher's ownership was checked when it subscribed; the deployment's project keeps its owner.
    watch = new StatusWatch<DeploymentRow>((id) => deployments.findWithCurrent(sequelize, id), d.events);
    statusWatches.set(d, watch);
  }
  return watch;
}

/** Why the deployment's log will grow no more, read afresh; null while it may (or if unreadable: throws). */
async function endOf(ctx: Context, id: string): Promise<LogEnd | null> {
  const { sequelize } = ctx.deps;
  const row = await deployments.findWithCurrent(sequelize, id);
  if (!row || row.status === 'DESTROYED') return { status: 'DESTROYED' };
  if (row.status !== 'STOPPED' && row.status !== 'FAILED') return null;
  if (row.status === 'STOPPED') {
    const current = await deployments.currentOf(sequelize, row.projectId);
    if (current && current !== id) return { status: row.status, replacedBy: current };
  }
  return { status: row.status };
}

/**
 * Calls `onEnd` once, when the deployment has reached a final status and kept it for END_GRACE_MS
 * (through the shared status feed: no query of its own while the deployment runs). A status that
 * cannot be read (the database down) ends nothing: the feed's next read tries again. Returns the
 * function that stops watching.
 */
export function watchFollowEnd(ctx: Context, id: string, onEnd: (end: LogEnd) => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  let done = false;
  const stop = () => {
    done = true;
    clearTimeout(timer);
    unsubscribe();
  };
  const unsubscribe = statusWatch(ctx).subscribe(id, (row) => {
    if (done || timer || (row && !FINAL.has(row.status))) return;
    timer = setTimeout(() => {
      endOf(ctx, id).then(
        (end) => {
          timer = undefined;
          if (done || !end) return;
          stop();
          onEnd(end);
        },
        () => {
          timer = undefined;
        },
      );
    }, END_GRACE_MS);
  });
  return stop;
}

/**
 * The lines a follower has not been sent yet, in pages: after `last` (the last line id it was sent),
 * or, when it was sent none, the last `tail` lines, as its history would have been.
 */
export async function unsentLines(
  logs: LogStore,
  id: string,
  last: number | null,
  tail: number | undefined,
): Promise<LogBatch[]> {
  const pages: LogBatch[] = [];
  if (last === null) {
    const lines = await logs.read(id, null, tail ?? LOG_PAGE_LINES);
    for (let i = 0; i < lines.length; i += LOG_PAGE_LINES)
      pages.push({ lines: lines.slice(i, i + LOG_PAGE_LINES) });
    return pages;
  }
  for (;;) {
    const page = await logs.readAfter(id, last);
    if (!page.length) break;
    const missed = page[0]!.id - last - 1;
    pages.push(missed > 0 ? { lines: page, missed } : { lines: page });
    last = page.at(-1)!.id;
    if (page.length < LOG_PAGE_LINES) break;
  }
  return pages;
}
