import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import type { Logger } from './logger';

/** A request as this server sees it after `requestLog`: its id is on `req.id` (and in `x-request-id`). */
export type IdentifiedRequest = http.IncomingMessage & { id?: string };

/**
 * One JSON line per request once its response is finished or abandoned: id, method, path (never the
 * query string, which carries tRPC inputs), status and milliseconds; 5xx at error level, an abandoned
 * response at warn (but a
 * stream the client closed, as it does to unsubscribe, at info). The id goes back in `x-request-id` and reaches the tRPC context, so an INTERNAL
 * error's message, its log line and this line share it.
 *
 * This replaces pino-http: it built two child loggers per request that nothing read, which was the
 * largest cost in the overhead benchmark's profile that was ours rather than tRPC's.
 */
export function requestLog(logger: Logger, opts: { skip?: (path: string) => boolean } = {}) {
  return (req: IdentifiedRequest, res: http.ServerResponse, next: () => void): void => {
    const id = randomUUID();
    req.id = id;
    res.setHeader('x-request-id', id);
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (opts.skip?.(path)) {
      next();
      return;
    }
    const start = performance.now();
    res.once('close', () => {
      const line = {
        reqId: id,
        method: req.method,
        path,
        status: res.statusCode,
        ms: Math.round((performance.now() - start) * 10) / 10,
      };
      // A stream (SSE subscription) ends when its client unsubscribes: that is its normal end.
      if (!res.writableFinished && isEventStream(res)) logger.info(line, 'stream closed by the client');
      else if (!res.writableFinished) logger.warn(line, 'request abandoned before its response was sent');
      else if (res.statusCode >= 500) logger.error(line, 'request failed');
      else logger.info(line, 'request completed');
    });
    next();
  };
}

function isEventStream(res: http.ServerResponse): boolean {
  return res.headersSent && String(res.getHeader('content-type') ?? '').startsWith('text/event-stream');
}
