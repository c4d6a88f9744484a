/**
 * `GET /downloads/database-backups/<project id>/<backup id>`: streams a backup's archive to the
 * project's owner (Bearer token, or the session cookie with the session header, as for the API).
 * Outside tRPC because the answer is a file of any size, sent as it is read from disk.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { getHTTPStatusCodeFromError } from '@trpc/server/http';
import { BACKUP_DOWNLOAD_PREFIX } from './backup-download-path';
import type { Context } from './context';
import { createBackupDownloadCaller } from './routers/projects';
import { TRPCError } from './trpc';

function answerError(res: ServerResponse, err: unknown): void {
  const trpc =
    err instanceof TRPCError
      ? err
      : new TRPCError({ code: 'INTERNAL_SERVER_ERROR', message: 'internal error' });
  const status = getHTTPStatusCodeFromError(trpc);
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { code: trpc.code, message: trpc.message } }));
}

export function createBackupDownloadHandler(opts: {
  createContext: (req: IncomingMessage, res: ServerResponse) => Context;
}): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const parts = url.pathname.slice(BACKUP_DOWNLOAD_PREFIX.length).split('/');
    const ctx = opts.createContext(req, res);
    void (async () => {
      if (parts.length !== 2) {
        throw new TRPCError({
          code: 'NOT_FOUND',
          message: `use ${BACKUP_DOWNLOAD_PREFIX}<project id>/<backup id>`,
        });
      }
      const [id, backupId] = parts.map((p) => decodeURIComponent(p)) as [string, string];
      return createBackupDownloadCaller(ctx).open({ id, backupId });
    })().then(
      async (download) => {
        res.writeHead(200, {
          'content-type': 'application/gzip',
          'content-length': String(download.sizeBytes),
          'content-disposition': `attachment; filename="${download.filename}"`,
          'cache-control': 'no-store',
          'x-backup-sha256': download.backup.sha256,
        });
        await pipeline(download.open(), res).catch(() => res.destroy());
      },
      (err: unknown) => {
        if (!(err instanceof TRPCError) || err.code === 'INTERNAL_SERVER_ERROR')
          ctx.deps.logError?.(err, { requestId: ctx.requestId, path: 'database-backups.download' });
        answerError(res, err);
      },
    );
  };
}
