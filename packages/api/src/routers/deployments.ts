import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEPLOYMENT_STATUSES, QueryTypes, type Transaction, User } from '@coderunner/db';
import { detectRuntime, extractTarGz } from '@coderunner/sandbox';
import { tracked } from '@trpc/server';
import { z } from 'zod';
import type { Context } from '../context';
import { openConnectionInfo } from '../deployments/database-hooks';
import { PENDING_CHANNEL } from '../deployments/engine';
import { ACTIVE_STATUSES, STATUS_CHANNEL } from '../deployments/lifecycle';
import type { LogBatch } from '../deployments/log-store';
import { type DeploymentRow, deploymentColumns } from '../deployments/row';
import { type DeploymentDto, toDeploymentDto } from '../dto';
import { CURSOR_TS_SQL, pageInput, toPage } from '../pagination';
import { quotaFor } from '../quotas';
import { protectedProcedure, router, serializedOnce, TRPCError } from '../trpc';

const RUNTIMES = ['nodejs', 'python', 'manifest'] as const;
/** Lines per history event of deployments.logs. */
const LOG_PAGE_LINES = 1000;

const deploymentNotFound = () => new TRPCError({ code: 'NOT_FOUND', message: 'deployment not found' });

function services(ctx: Context) {
  const d = ctx.deps.deployments;
  if (!d)
    throw new TRPCError({ code: 'PRECONDITION_FAILED', message: 'this server does not run deployments' });
  return d;
}

const COLUMNS = deploymentColumns('d');

/** The caller's deployment, scoped in SQL through its project's owner; others' are NOT_FOUND. */
async function loadOwned(ctx: Context & { user: { id: string } }, id: string): Promise<DeploymentRow> {
  const [row] = await ctx.deps.sequelize.query<DeploymentRow>(
    `SELECT ${COLUMNS} FROM deployments d JOIN projects p ON p.id = d.project_id
     WHERE d.id = :id AND p.user_id = :userId`,
    { type: QueryTypes.SELECT, replacements: { id, userId: ctx.user.id } },
  );
  if (!row) throw deploymentNotFound();
  return row;
}

export const ownedDeploymentProcedure = protectedProcedure
  .input(z.object({ id: z.uuid('must be a deployment id (UUID)') }))
  .use(async ({ ctx, input, next }) => next({ ctx: { deployment: await loadOwned(ctx, input.id) } }));

/** Serialises a user's quota-checked writes and counts the deployments holding a sandbox. */
async function assertDeploymentQuota(userId: string, transaction: Transaction, ctx: Context): Promise<void> {
  const user = await User.findByPk(userId, { transaction, lock: transaction.LOCK.UPDATE });
  if (!user) throw new TRPCError({ code: 'UNAUTHORIZED', message: 'the account no longer exists' });
  const [{ n }] = (await ctx.deps.sequelize.query(
    `SELECT count(*)::int AS n FROM deployments d JOIN projects p ON p.id = d.project_id
     WHERE p.user_id = :userId AND d.status = ANY(ARRAY[:active]::deployment_status[])`,
    { type: QueryTypes.SELECT, replacements: { userId, active: ACTIVE_STATUSES }, transaction },
  )) as [{ n: number }];
  const limit = quotaFor(user.planType).activeDeployments;
  if (n >= limit) {
    throw new TRPCError({
      code: 'FORBIDDEN',
      message: `the ${user.planType} plan allows ${limit} running deployment${limit === 1 ? '' : 's'}; stop or destroy one, or upgrade your plan`,
    });
  }
}

const createFields = z.strictObject({
  projectId: z.uuid('must be a project id (UUID)'),
  runtime: z.enum(RUNTIMES).optional(),
  database: z.enum(['postgres']).optional(),
});

/** `deployments.create` input: FormData with `projectId`, optional `runtime`/`database`, and `source` (a .tar.gz). */
const createInput = z.instanceof(FormData, {
  message: 'send multipart form data (the CLI and createClient do)',
});

async function readUpload(ctx: Context, form: FormData) {
  const fields: Record<string, string> = {};
  let source: Blob | null = null;
  for (const [key, value] of form.entries()) {
    if (key === 'source') {
      if (typeof value === 'string')
        throw new TRPCError({ code: 'BAD_REQUEST', message: 'source: must be a file' });
      source = value;
    } else if (typeof value === 'string') {
      fields[key] = value;
    }
  }
  const parsed = createFields.safeParse(fields);
  if (!parsed.success) {
    const msg = parsed.error.issues.map((i) => `${i.path.join('.') || 'input'}: ${i.message}`).join('; ');
    throw new TRPCError({ code: 'BAD_REQUEST', message: msg });
  }
  if (!source)
    throw new TRPCError({ code: 'BAD_REQUEST', message: 'source: a .tar.gz of the app folder is required' });
  const { maxUploadBytes } = services(ctx);
  if (source.size > maxUploadBytes) {
    throw new TRPCError({
      code: 'PAYLOAD_TOO_LARGE',
      message: `the upload is ${(source.size / 1024 / 1024).toFixed(1)} MB; the limit is ${maxUploadBytes / 1024 / 1024} MB (CODERUNNER_MAX_UPLOAD_MB)`,
    });
  }
  return { ...parsed.data, archive: Buffer.from(await source.arrayBuffer()) };
}

/** Unpack into a scratch folder to refuse unsafe or undeployable archives before anything is stored. */
async function inspectArchive(ctx: Context, archive: Buffer, runtime?: (typeof RUNTIMES)[number]) {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'coderunner-upload-'));
  try {
    await extractTarGz(archive, scratch, { maxFiles: services(ctx).maxFiles });
    return await detectRuntime(scratch, runtime);
  } catch (err) {
    // ArchiveError (unsafe or malformed archive) or a runtime detection error: the user's to fix.
    if (err instanceof Error && !(err instanceof TRPCError)) {
      throw new TRPCError({ code: 'BAD_REQUEST', message: err.message, cause: err });
    }
    throw err;
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

export const deploymentsRouter = router({
  create: protectedProcedure.input(createInput).mutation(async ({ ctx, input }): Promise<DeploymentDto> => {
    const { sources } = services(ctx);
    const upload = await readUpload(ctx, input);
    const plan = await inspectArchive(ctx, upload.archive, upload.runtime);
    const row = await ctx.deps.sequelize.transaction(async (transaction) => {
      const [project] = await ctx.deps.sequelize.query<{ id: string }>(
        'SELECT id FROM projects WHERE id = :id AND user_id = :userId',
        { type: QueryTypes.SELECT, replacements: { id: upload.projectId, userId: ctx.user.id }, transaction },
      );
      if (!project) throw new TRPCError({ code: 'NOT_FOUND', message: 'project not found' });
      await assertDeploymentQuota(ctx.user.id, transaction, ctx);
      const [inserted] = await ctx.deps.sequelize.query<DeploymentRow>(
        `INSERT INTO deployments AS d (project_id, runtime_type) VALUES (:projectId, :runtime) RETURNING ${COLUMNS}`,
        {
          type: QueryTypes.SELECT,
          replacements: { projectId: project.id, runtime: plan.runtime },
          transaction,
        },
      );
      const created = inserted!;
      try {
        sources.save(created.id, upload.archive, { runtime: upload.runtime, database: upload.database });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOSPC' || code === 'EROFS' || code === 'EACCES' || code === 'EDQUOT') {
          ctx.deps.logError?.(err, { requestId: ctx.requestId, path: 'deployments.create' });
          throw new TRPCError({
            code: 'SERVICE_UNAVAILABLE',
            message: `the server cannot store uploads right now (${code === 'ENOSPC' || code === 'EDQUOT' ? 'its disk is full' : 'its data folder is read-only'}); try again later`,
            cause: err,
          });
        }
        throw err;
      }
      // Delivered at commit: workers on every replica wake up.
      await ctx.deps.sequelize.query(`SELECT pg_notify('${PENDING_CHANNEL}', :id)`, {
        replacements: { id: created.id },
        transaction,
      });
      return created;
    });
    services(ctx).logs.append(
      row.id,
      'system',
      'info',
      `queued (${(upload.archive.length / 1024).toFixed(1)} KiB upload)`,
    );
    services(ctx).onQueued?.();
    return toDeploymentDto(row);
  }),

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
      const cursor = input?.cursor ?? null;
      const where = ['p.user_id = :userId'];
      if (input?.projectId) where.push('d.project_id = :projectId');
      if (input?.status) where.push('d.status = :status');
      if (cursor) where.push('(d.created_at, d.id) < (:cursorTs::timestamptz, :cursorId::uuid)');
      const rows = await ctx.deps.sequelize.query<DeploymentRow & { cursorTs: string }>(
        `SELECT ${COLUMNS}, ${CURSOR_TS_SQL.replace('created_at', 'd.created_at')} AS "cursorTs"
         FROM deployments d JOIN projects p ON p.id = d.project_id
         WHERE ${where.join(' AND ')}
         ORDER BY d.created_at DESC, d.id DESC LIMIT :take`,
        {
          type: QueryTypes.SELECT,
          replacements: {
            userId: ctx.user.id,
            projectId: input?.projectId ?? null,
            status: input?.status ?? null,
            cursorTs: cursor?.createdAt ?? null,
            cursorId: cursor?.id ?? null,
            take: limit + 1,
          },
        },
      );
      return toPage(rows, limit, toDeploymentDto);
    }),

  get: ownedDeploymentProcedure.query(({ ctx }) => toDeploymentDto(ctx.deployment)),

  stop: ownedDeploymentProcedure.mutation(async ({ ctx }) => {
    const { engine } = services(ctx);
    if (ctx.deployment.status !== 'RUNNING' || !(await engine.stopDeployment(ctx.deployment))) {
      const now = await loadOwned(ctx, ctx.deployment.id);
      throw new TRPCError({
        code: 'CONFLICT',
        message: `only a RUNNING deployment can be stopped; this one is ${now.status}`,
      });
    }
    return toDeploymentDto(await loadOwned(ctx, ctx.deployment.id));
  }),

  start: ownedDeploymentProcedure.mutation(async ({ ctx }) => {
    const { sources, logs } = services(ctx);
    if (!sources.exists(ctx.deployment.id)) {
      throw new TRPCError({
        code: 'CONFLICT',
        message: 'the stored source of this deployment is gone; deploy again',
      });
    }
    await ctx.deps.sequelize.transaction(async (transaction) => {
      await assertDeploymentQuota(ctx.user.id, transaction, ctx);
      const [moved] = await ctx.deps.sequelize.query<{ id: string }>(
        `UPDATE deployments SET status = 'PENDING' WHERE id = :id AND status = 'STOPPED' RETURNING id`,
        { type: QueryTypes.SELECT, replacements: { id: ctx.deployment.id }, transaction },
      );
      if (!moved) {
        throw new TRPCError({
          code: 'CONFLICT',
          message: `only a STOPPED deployment can be started; this one is ${ctx.deployment.status}`,
        });
      }
      await ctx.deps.sequelize.query(
        `SELECT pg_notify('${PENDING_CHANNEL}', :id), pg_notify('${STATUS_CHANNEL}', :status)`,
        {
          replacements: {
            id: ctx.deployment.id,
            status: `${ctx.deployment.id}:PENDING:${ctx.deployment.projectId}`,
          },
          transaction,
        },
      );
    });
    logs.append(ctx.deployment.id, 'system', 'info', 'starting again from the stored source');
    services(ctx).onQueued?.();
    return toDeploymentDto(await loadOwned(ctx, ctx.deployment.id));
  }),

  destroy: ownedDeploymentProcedure.mutation(async ({ ctx }) => {
    if (ctx.deployment.status !== 'DESTROYED') await services(ctx).engine.destroyDeployment(ctx.deployment);
    return toDeploymentDto(await loadOwned(ctx, ctx.deployment.id));
  }),

  /**
   * The deployment's database credentials, decrypted for its owner only. Nothing else (list, get,
   * watch, logs, errors) ever carries them.
   */
  databaseCredentials: ownedDeploymentProcedure.query(({ ctx }) => {
    const { keyring } = services(ctx);
    if (!ctx.deployment.dbSandboxId || !ctx.deployment.dbConnectionInfo) {
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
    const { events } = services(ctx);
    let last = '';
    const queue: string[] = [];
    let wake: (() => void) | undefined;
    const onEvent = () => {
      queue.push('change');
      wake?.();
    };
    events.on(ctx.deployment.id, onEvent);
    try {
      while (!signal?.aborted) {
        const row = await loadOwned(ctx, ctx.deployment.id).catch(() => null);
        if (!row) return;
        const key = `${row.status}:${row.publicUrl ?? ''}`;
        if (key !== last) {
          last = key;
          yield toDeploymentDto(row);
        }
        if (row.status === 'DESTROYED') return;
        if (!queue.length) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            setTimeout(resolve, 2_000).unref(); // also poll: another replica's change may come without NOTIFY
            signal?.addEventListener('abort', () => resolve(), { once: true });
          });
          wake = undefined;
        }
        queue.length = 0;
      }
    } finally {
      events.off(ctx.deployment.id, onEvent);
    }
  }),

  /**
   * Build and runtime log lines in batches (`{ lines, missed? }`, see LogBatch): the history
   * (bounded), then, with `follow`, live lines until the client goes away, gathered per short tick
   * (50 ms) into one event. Each batch is a tracked event whose id is its last line's id, so a
   * reconnecting client resumes after the last line it got (`lastEventId`) and loses nothing the
   * server still keeps; `missed` says how many lines it could not be sent (older than the bounded
   * log keeps, or skipped because it read too slowly).
   */
  logs: protectedProcedure
    .input(
      z.strictObject({
        id: z.uuid('must be a deployment id (UUID)'),
        follow: z.boolean().optional(),
        tail: z.number().int().min(1).max(10_000).optional(),
        lastEventId: z.string().regex(/^\d+$/).nullish(),
      }),
    )
    .subscription(async function* ({ ctx, input, signal }) {
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
      for await (const batch of logs.follow(deployment.id, after, controller.signal, { tail: input.tail })) {
        // The same batch object goes to every follower of this deployment: serialized once.
        yield tracked(String(batch.lines.at(-1)!.id), serializedOnce(batch));
      }
    }),
});
