import {
  type ApiDeps,
  appRouter,
  BACKUP_DOWNLOAD_PREFIX,
  createBackupDownloadHandler,
  createLogFollowHandler,
  createRequestContext,
  DEFAULT_MAX_UPLOAD_MB,
  MAX_BATCH_SIZE,
  SESSION_HEADER,
  UNAVAILABLE_RETRY_SECONDS,
  uploadTooLargeMessage,
} from '@coderunner/api';
import { QueryTypes } from '@coderunner/db';
import { createExpressMiddleware } from '@trpc/server/adapters/express';
import cors from 'cors';
import express from 'express';
import helmet from 'helmet';
import { refuseAppsAddress } from './apps-address';
import { serveDashboard } from './dashboard';
import type { Logger } from './logger';
import { type IdentifiedRequest, requestLog } from './request-log';

export interface AppOptions {
  deps: ApiDeps;
  logger: Logger;
  /** Largest JSON body tRPC accepts, in bytes. */
  maxJsonBodyBytes?: number;
  /** Browser origins allowed to call the API (CORS); empty: none. */
  corsOrigins?: string[];
  /** Largest body of `deployments.create` (the only route taking uploads), in bytes. */
  maxUploadBytes?: number;
  /** Serves deployments' public URLs (requests whose Host names a deployment). */
  appProxy?: (req: express.Request, res: express.Response, next: () => void) => void;
  /** The built dashboard (apps/web/dist), served at `/`; absent: `/` answers 404. */
  dashboardDir?: string;
  /**
   * Proxies whose X-Forwarded-For is believed (TRUST_PROXY). Default none: a client's address is its
   * TCP peer, so that nobody (a deployed app on this machine included) can pick the address that the
   * per-IP limits count.
   */
  trustProxy?: string[];
  /** Tenant isolation in force, reported by /readyz. */
  isolation?: 'sandbox' | 'none';
}

/** Resolves when the database answers within `timeoutMs`; rejects with a short reason otherwise. */
async function checkDatabase(deps: ApiDeps, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      deps.sequelize.query('SELECT 1', { type: QueryTypes.SELECT }),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function reasonOf(err: unknown): string {
  const e = err as { parent?: { code?: string }; original?: { code?: string }; message?: string };
  const code = e.parent?.code ?? e.original?.code;
  return code ? `database unreachable (${code})` : `database unreachable (${e.message ?? 'unknown error'})`;
}

const RPC_CODES = { BAD_REQUEST: -32600, PAYLOAD_TOO_LARGE: -32013 } as const;

/** After refusing an upload, how much more of its body is read (and dropped) before the socket is closed. */
const LINGER_BYTES = 8 * 1024 * 1024;
const LINGER_MS = 1_000;

/**
 * Answers an upload before reading its body, in tRPC's error shape (so the typed client shows the
 * message). What the client keeps sending is read and dropped for a little while (a "lingering close"):
 * closing a socket with unread data at once resets it, and the client would see ECONNRESET or EPIPE
 * instead of this answer. Past LINGER_BYTES or LINGER_MS the connection is closed; a body that ends
 * sooner leaves the connection open for the next request.
 */
function refuseUpload(
  req: express.Request,
  res: express.Response,
  status: number,
  code: keyof typeof RPC_CODES,
  message: string,
): void {
  let seen = 0;
  const close = () => {
    clearTimeout(timer);
    req.socket.destroy();
  };
  const timer = setTimeout(close, LINGER_MS);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > LINGER_BYTES) close();
  });
  req.once('end', () => clearTimeout(timer));
  req.resume();
  res.status(status).json({
    error: {
      json: {
        message,
        code: RPC_CODES[code],
        data: { code, httpStatus: status, path: 'deployments.create' },
      },
    },
  });
}

export function createApp(opts: AppOptions): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', opts.trustProxy?.length ? opts.trustProxy : false);

  app.use(requestLog(opts.logger, { skip: (path) => path === '/healthz' }));
  // Neither dashboard, API nor app proxy on the apps' own address (apps-address.ts).
  app.use(refuseAppsAddress);

  if (opts.appProxy) app.use(opts.appProxy);
  app.use(helmet());
  if (opts.corsOrigins?.length) {
    app.use(
      cors({
        origin: opts.corsOrigins.includes('*') ? true : opts.corsOrigins,
        allowedHeaders: [
          'authorization',
          'content-type',
          'trpc-accept',
          'x-trpc-source',
          'last-event-id',
          SESSION_HEADER,
        ],
        // A browser client may read when to retry, and the id to quote in a report.
        exposedHeaders: ['retry-after', 'x-request-id'],
        maxAge: 600,
      }),
    );
  }

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', async (_req, res) => {
    try {
      await checkDatabase(opts.deps, 2_000);
      res.json({ status: 'ready', database: 'ok', ...(opts.isolation ? { isolation: opts.isolation } : {}) });
    } catch (err) {
      res.status(503).json({ status: 'unavailable', reason: reasonOf(err) });
    }
  });

  const trpcHandler = (maxBodySize: number) =>
    createExpressMiddleware({
      router: appRouter,
      maxBodySize,
      // One request may not carry unbounded work (1,000 calls, or enough logins to hold every argon2 slot).
      maxBatchSize: MAX_BATCH_SIZE,
      createContext: ({ req, res }) =>
        createRequestContext(opts.deps, req, (req as IdentifiedRequest).id, res),
      responseMeta({ errors }) {
        // A rate-limited call tells the client when to retry, in the standard header too.
        const waits = errors.map(
          (e) => (e.cause as { retryAfterSeconds?: number } | undefined)?.retryAfterSeconds ?? 0,
        );
        // An unavailable database: come back in a few seconds.
        if (errors.some((e) => e.code === 'SERVICE_UNAVAILABLE')) waits.push(UNAVAILABLE_RETRY_SECONDS);
        const retryAfter = Math.max(0, ...waits);
        return retryAfter > 0 ? { headers: { 'retry-after': String(retryAfter) } } : {};
      },
    });
  const maxUpload = opts.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_MB * 1024 * 1024;
  const jsonHandler = trpcHandler(opts.maxJsonBodyBytes ?? 1024 * 1024);
  // Only the upload route accepts large bodies (with a slack for the multipart framing).
  const uploadLimit = maxUpload + 64 * 1024;
  const uploadHandler = trpcHandler(uploadLimit);
  // Log followers (every open deployment page, every `logs --follow`) take a lean path that writes
  // each batch's SSE frame once for all of them; what it does not take goes on to tRPC.
  const logFollowHandler = createLogFollowHandler({
    createContext: (req, res) =>
      createRequestContext(opts.deps, req as express.Request, (req as IdentifiedRequest).id, res),
  });
  const backupDownload = createBackupDownloadHandler({
    createContext: (req, res) =>
      createRequestContext(opts.deps, req as express.Request, (req as IdentifiedRequest).id, res),
  });
  app.get(`${BACKUP_DOWNLOAD_PREFIX}*rest`, (req, res) => backupDownload(req, res));
  app.use('/trpc', (req, res, next) => {
    if (req.method === 'GET' && req.path === '/deployments.logs')
      return logFollowHandler(req, res, () => jsonHandler(req, res, next));
    if (req.path !== '/deployments.create' || req.method !== 'POST') return jsonHandler(req, res, next);
    // Only a multipart upload gets the upload's limit: anything else is held to the JSON limit (and
    // then told to send form data), not parsed up to 50 MB first.
    if (!/^multipart\/form-data\b/i.test(req.headers['content-type'] ?? ''))
      return jsonHandler(req, res, next);
    const declared = req.headers['content-length'];
    // A body of undeclared length (chunked) would be read up to the limit before it could be refused:
    // every upload must say its size (fetch, browsers and the CLI do for FormData).
    if (declared === undefined)
      return refuseUpload(req, res, 411, 'BAD_REQUEST', 'the upload must declare its size (Content-Length)');
    if (Number(declared) > uploadLimit)
      return refuseUpload(
        req,
        res,
        413,
        'PAYLOAD_TOO_LARGE',
        uploadTooLargeMessage(Number(declared), maxUpload),
      );
    return uploadHandler(req, res, next);
  });

  if (opts.dashboardDir) app.use(serveDashboard(opts.dashboardDir));

  app.use((_req, res) => {
    res.status(404).json({ error: 'not found' });
  });

  return app;
}
