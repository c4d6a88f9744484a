/**
 * Serving a static site's files (a deployment whose build left static output and no server; see
 * packages/api/src/deployments/static-sites.ts) with no app process: serve-static (send) for
 * content types, ranges, ETags and refusing paths out of the folder; compression (gzip, brotli);
 * an SPA's routes fall back to its index.html; hashed assets are cached for a year, HTML never
 * without asking again.
 */
import type http from 'node:http';
import path from 'node:path';
import compression from 'compression';
import { LRUCache } from 'lru-cache';
import send from 'send';
import serveStatic from 'serve-static';

/** Names with a content hash (`index-D8ZcB2xL.js`) and the frameworks' immutable folders. */
const HASHED = /[.-](?=[A-Za-z0-9_]*\d)[A-Za-z0-9_-]{8,}\.[a-z0-9]+$/;
const IMMUTABLE_DIRS = ['/_next/static/', '/_app/immutable/', '/_astro/'];

export const CACHE_HASHED = 'public, max-age=31536000, immutable';
export const CACHE_HTML = 'no-cache';

function setCacheHeaders(res: http.ServerResponse, file: string): void {
  const posix = file.split(path.sep).join('/');
  if (posix.endsWith('.html')) res.setHeader('cache-control', CACHE_HTML);
  else if (HASHED.test(posix) || IMMUTABLE_DIRS.some((d) => posix.includes(d)))
    res.setHeader('cache-control', CACHE_HASHED);
  else res.setHeader('cache-control', 'public, max-age=0, must-revalidate');
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

function siteHandler(root: string): Handler {
  const compress = compression();
  const files = serveStatic(root, {
    index: ['index.html'],
    dotfiles: 'ignore',
    fallthrough: true,
    redirect: true,
    setHeaders: setCacheHeaders,
  });
  return (req, res) => {
    const fail = (status: number, text: string) => {
      if (res.headersSent) return res.destroy();
      res.statusCode = status;
      res.setHeader('content-type', 'text/plain; charset=utf-8');
      res.end(text);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      fail(405, 'a static site answers GET and HEAD only\n');
      return;
    }
    compress(req as never, res as never, () => {
      files(req as never, res as never, (err?: unknown) => {
        if (err) {
          const status = (err as { status?: number }).status ?? 500;
          fail(status, status === 403 ? 'forbidden\n' : 'cannot read the file\n');
          return;
        }
        // Not a file: a route of a single-page app (no extension) gets index.html; the rest is 404.
        const pathname = (req.url ?? '/').split('?')[0] ?? '/';
        if (path.posix.extname(pathname) !== '') {
          fail(404, 'not found\n');
          return;
        }
        send(req, '/index.html', { root, dotfiles: 'ignore' })
          .on('headers', (r: http.ServerResponse) => r.setHeader('cache-control', CACHE_HTML))
          .on('error', () => fail(404, 'not found\n'))
          .pipe(res);
      });
    });
  };
}

/** One handler per site folder (a folder is a deployment's, and never changes in place). */
const handlers = new LRUCache<string, Handler>({ max: 1000 });

export function serveStaticSite(root: string, req: http.IncomingMessage, res: http.ServerResponse): void {
  let handler = handlers.get(root);
  if (!handler) {
    handler = siteHandler(root);
    handlers.set(root, handler);
  }
  handler(req, res);
}
