import { DEPLOYMENT_STATUSES } from '@coderunner/db';
import { tracked } from '@trpc/server';
import { z } from 'zod';
import type { Context } from '../context';
import { openConnectionInfo } from '../deployments/database-hooks';
import type { LogBatch, LogEnd } from '../deployments/log-store';
import type { DeploymentRow } from '../deployments/row';
import type { UploadForm } from '../deployments/upload';
import { USAGE_INTERVAL_MS, type UsageNow } from '../deployments/usage';
import {
  type DeploymentDetailDto,
  type DeploymentDto,
  type DeploymentUsageDto,
  toDeploymentDto,
  type UsageFiguresDto,
} from '../dto';
import { LOG_PAGE_LINES, statusWatch, unsentLines, watchFollowEnd } from '../follow-end';
import { pageInput, toPage } from '../pagination';
import * as deployments from '../tables/deployments';
import { createCallerFactory, protectedProcedure, router, serializedOnce, TRPCError } from '../trpc';

const deploymentNotFound = () => new TRPCError({ code: 'NOT_FOUND', message: 'deployment not found' });

/** A FAILED row's reason, read from its log through the one accessor; null for the others (not read). */
async function reasonOf(ctx: Context, row: { id: string; status: string }): Promise<string | null> {
  const logs = ctx.deps.deployments?.logs;
  return row.status === 'FAILED' && logs ? logs.failureReason(row.id) : null;
}

/** The deployment as the API returns it, with a FAILED one's reason. */
async function deploymentDto(
  ctx: Context,
  row: Parameters<typeof toDeploymentDto>[0],
): Promise<DeploymentDto> {
  return toDeploymentDto(row, await reasonOf(ctx, row));
}

/** A RUNNING deployment's figures now (the sampler's, or read at once); null when not running or unknown. */
function toUsageFiguresDto(u: UsageNow): UsageFiguresDto {
  return {
    at: u.at,
    memoryBytes: u.memoryBytes,
    memoryPeakBytes: u.memoryPeakBytes,
    memoryLimitBytes: u.memoryLimitBytes,
    cpu: u.cpu,
    cpuSeconds: u.cpuSeconds,
    cpus: u.cpus,
  };
}

async function usageNow(ctx: Context, row: DeploymentRow): Promise<UsageFiguresDto | null> {
  const sampler = ctx.deps.deployments?.usage;
  if (!sampler || row.status !== 'RUNNING' || !row.appSandboxId) return null;
  const now = await sampler.current(row.id, row.appSandboxId);
  return now && toUsageFiguresDto(now);
}

function services(ctx: Context) {
  const d = ctx.deps.deployments;
  if (!d)
    throw new TRPCError({ code: 'PRECONDITION_FAILED', message: 'this server does not run deployments' });
  return d;
}

/** The caller's deployment, scoped in SQL through its project's owner; others' are NOT_FOUND. */
async function loadOwned(ctx: Context & { user: { id: string } }, id: string): Promise<DeploymentRow> {
  const row = await deployments.findOwned(ctx.deps.sequelize, id, ctx.user.id);
  if (!row) throw deploymentNotFound();
  return row;
}

export const ownedDeploymentProcedure = protectedProcedure
  .input(z.object({ id: z.uuid('must be a deployment id (UUID)') }))
  .use(async ({ ctx, input, next }) => next({ ctx: { deployment: await loadOwned(ctx, input.id) } }));

/** `deployments.rollback`/`redeploy` options, beside the id. */
const releaseOptions = z.object({
  noCache: z.boolean({ error: 'noCache must be true or false' }).optional(),
});

/** `deployments.create` input: FormData with `projectId`, optional `runtime`/`database`, and `source` (a .tar.gz). */
const createInput = z.custom<UploadForm>((v) => v instanceof FormData, {
  message: 'send multipart form data (the CLI and createClient do)',
});

/** `deployments.logs` input; `lastEventId` is set by tRPC from the reconnecting EventSource's Last-Event-ID. */
export const logsInput = z.strictObject({
  id: z.uuid('must be a deployment id (UUID)'),
  follow: z.boolean().optional(),
  tail: z.number().int().min(1).max(10_000).optional(),
  lastEventId: z.string().regex(/^\d+$/).nullish(),
});

/**
 * The checks `deployments.logs` makes before it streams (the caller's token, the input, the
 * deployment being the caller's, a server that runs deployments), for the lean follow path
 * (log-follow-http.ts): the same procedure chain, so the same refusals. Not part of the API.
 */
const logsAccessRouter = router({
  open: protectedProcedure.input(logsInput).query(async ({ ctx, input }) => {
    const deployment = await loadOwned(ctx, input.id);
    services(ctx);
    return deployment.id;
  }),
});
export const createLogsAccessCaller = createCallerFactory(logsAccessRouter);

export const deploymentsRouter = router({
  create: protectedProcedure
    .input(createInput)
    .mutation(
      async ({ ctx, input }): Promise<DeploymentDto> =>
        deploymentDto(ctx, await services(ctx).create(ctx.user.id, input, ctx.requestId)),
    ),

  list: protectedProcedure
    .input(
      z
        .strictObject({
          ...pageInput,
          projectId: z.uuid('must be a project id (UUID)').optional(),
          status: z.enum(DEPLOYMENT_STATUSES).optional(),
        })
        .optional(),
    )
    .query(async ({ ctx, input }): Promise<{ items: DeploymentDto[]; nextCursor: string | null }> => {
      const limit = input?.limit ?? 20;
      const rows = await deployments.listOwned(ctx.deps.sequelize, ctx.user.id, {
        projectId: input?.projectId,
        status: input?.status,
        cursor: input?.cursor ?? null,
        take: limit + 1,
      });
      // Read only for the FAILED rows of the page (the end of each one's log; see LogStore.failureReason).
      const page = rows.slice(0, limit);
      const reasons = new Map(
        await Promise.all(page.map(async (r) => [r.id, await reasonOf(ctx, r)] as const)),
      );
      return toPage(rows, limit, (row) => toDeploymentDto(row, reasons.get(row.id) ?? null));
    }),

  get: ownedDeploymentProcedure.query(
    async ({ ctx }): Promise<DeploymentDetailDto> => ({
      ...(await deploymentDto(ctx, ctx.deployment)),
      usage: await usageNow(ctx, ctx.deployment),
    }),
  ),

  /**
   * What the app used over the last hour (memory and CPU every 10 s, sampled by this server while it
   * runs), its figures now and its limits. Empty points: not RUNNING, or not sampled here yet.
   */
  usage: ownedDeploymentProcedure.query(async ({ ctx }): Promise<DeploymentUsageDto> => {
    const sampler = ctx.deps.deployments?.usage;
    const row = ctx.deployment;
    const running = sampler && row.status === 'RUNNING' && row.appSandboxId;
    return {
      intervalMs: sampler?.intervalMs ?? USAGE_INTERVAL_MS,
      now: await usageNow(ctx, row),
      points: running ? sampler.points(row.id, row.appSandboxId!) : [],
    };
  }),

  stop: ownedDeploymentProcedure.mutation(async ({ ctx }) => {
    await services(ctx).stop(ctx.deployment);
    return deploymentDto(ctx, await loadOwned(ctx, ctx.deployment.id));
  }),

  start: ownedDeploymentProcedure.mutation(async ({ ctx }) => {
    await services(ctx).start(ctx.user.id, ctx.deployment);
    return deploymentDto(ctx, await loadOwned(ctx, ctx.deployment.id));
  }),

  /**
   * A new deployment from this one's stored source and the environment it ran with; the project URL
   * serves it once it is RUNNING (the deployment it replaces drains, then stops).
   */
  rollback: ownedDeploymentProcedure.input(releaseOptions).mutation(
    async ({ ctx, input }): Promise<DeploymentDto> =>
      deploymentDto(
        ctx,
        await services(ctx).release(ctx.user.id, ctx.deployment, 'rollback', ctx.requestId, {
          noCache: input.noCache,
        }),
      ),
  ),

  /**
   * A new deployment from this one's stored source, with the project's variables as they are now.
   * `noCache`: build without the project's build cache (it is dropped; this build fills it again).
   */
  redeploy: ownedDeploymentProcedure.input(releaseOptions).mutation(
    async ({ ctx, input }): Promise<DeploymentDto> =>
      deploymentDto(
        ctx,
        await services(ctx).release(ctx.user.id, ctx.deployment, 'redeploy', ctx.requestId, {
          noCache: input.noCache,
        }),
      ),
  ),

  destroy: ownedDeploymentProcedure.mutation(async ({ ctx }) => {
    await services(ctx).destroy(ctx.deployment);
    return deploymentDto(ctx, await loadOwned(ctx, ctx.deployment.id));
  }),

  /**
   * The deployment's database credentials, decrypted for its owner only. Nothing else (list, get,
   * watch, logs, errors) ever carries them.
   */
  databaseCredentials: ownedDeploymentProcedure.query(({ ctx }) => {
    const { keyring } = services(ctx);
    // A deployment that handed the database on keeps its credentials (its app still uses them).
    if (!ctx.deployment.dbConnectionInfo) {
      throw new TRPCError({
        code: 'PRECONDITION_FAILED',
        message: "this deployment has no database; deploy with database: 'postgres' to get one",
      });
    }
    if (!keyring)
      throw new TRPCError({ code: 'PRECONDITION_FAILED', message: 'this server has no encryption keys' });
    try {
      const info = openConnectionInfo(keyring, ctx.deployment.id, ctx.deployment.dbConnectionInfo);
      return {
        host: info.host,
        port: info.port,
        user: info.user,
        password: info.password,
        database: info.database,
        url: info.url,
      };
    } catch (err) {
      // SecretBoxError messages name key ids, never key material or plaintext.
      throw new TRPCError({
        code: 'PRECONDITION_FAILED',
        message: `cannot decrypt the credentials: ${(err as Error).message}`,
        cause: err,
      });
    }
  }),

  /** Status changes of one deployment: its current state first, then each change; ends once DESTROYED. */
  watch: ownedDeploymentProcedure.subscription(async function* ({ ctx, signal }) {
    let last = '';
    // The row to hand on next (the one the ownership check just read first); undefined: none yet.
    let next: DeploymentRow | null | undefined = ctx.deployment;
    let wake: (() => void) | undefined;
    const onAbort = () => wake?.();
    signal?.addEventListener('abort', onAbort, { once: true });
    const unsubscribe = statusWatch(ctx).subscribe(ctx.deployment.id, (row) => {
      next = row;
      wake?.();
    });
    try {
      while (!signal?.aborted) {
        if (next === undefined) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
          continue;
        }
        const row: DeploymentRow | null = next;
        next = undefined;
        if (!row) return;
        const key = `${row.status}:${row.publicUrl ?? ''}:${row.current}`;
        if (key !== last) {
          last = key;
          let dto = await deploymentDto(ctx, row);
          // The reconciler records FAILED just before it logs why: give that line a moment to come.
          for (
            let i = 0;
            i < 5 && dto.failureReason === null && row.status === 'FAILED' && !signal?.aborted;
            i++
          ) {
            await new Promise((resolve) => setTimeout(resolve, 100));
            dto = await deploymentDto(ctx, row);
          }
          yield dto;
        }
        if (row.status === 'DESTROYED') return;
      }
    } finally {
      unsubscribe();
      signal?.removeEventListener('abort', onAbort);
    }
  }),

  /**
   * Build and runtime log lines in batches (`{ lines, missed? }`, see LogBatch): the history
   * (bounded), then, with `follow`, live lines until the client goes away, gathered per short tick
   * (50 ms) into one event. Each batch is a tracked event whose id is its last line's id, so a
   * reconnecting client resumes after the last line it got (`lastEventId`) and loses nothing the
   * server still keeps; `missed` says how many lines it could not be sent (older than the bounded
   * log keeps, or skipped because it read too slowly). On the HTTP server, requests with `follow`
   * that pass this procedure's checks are streamed by the lean path in log-follow-http.ts (the same
   * events, framed once per batch for every follower); this body serves the others.
   */
  logs: protectedProcedure.input(logsInput).subscription(async function* ({ ctx, input, signal }) {
    const deployment = await loadOwned(ctx, input.id);
    const { logs } = services(ctx);
    const after = input.lastEventId ? Number(input.lastEventId) : null;
    if (!input.follow) {
      const lines = await logs.read(deployment.id, after, input.tail ?? 1000);
      for (let i = 0; i < lines.length; i += LOG_PAGE_LINES) {
        const page: LogBatch = { lines: lines.slice(i, i + LOG_PAGE_LINES) };
        yield tracked(String(page.lines.at(-1)!.id), page);
      }
      return;
    }
    const controller = new AbortController();
    signal?.addEventListener('abort', () => controller.abort(), { once: true });
    let end: LogEnd | undefined;
    const stopWatching = watchFollowEnd(ctx, deployment.id, (e) => {
      end = e;
      controller.abort();
    });
    let last = after;
    try {
      for await (const batch of logs.follow(deployment.id, after, controller.signal, { tail: input.tail })) {
        last = batch.lines.at(-1)!.id;
        // The same batch object goes to every follower of this deployment: serialized once.
        yield tracked(String(last), serializedOnce(batch));
      }
    } finally {
      stopWatching();
    }
    if (!end || signal?.aborted) return;
    // The deployment writes no more: what it wrote last, then why the follow ends.
    for (const page of await unsentLines(logs, deployment.id, last, input.tail)) {
      last = page.lines.at(-1)!.id;
      yield tracked(String(last), page);
    }
    yield tracked(String(last ?? 0), { lines: [], end } as LogBatch);
  }),
});
