import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';

/** Where `pnpm start` builds the dashboard (apps/web/dist). */
export const DEFAULT_DASHBOARD_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../web/dist',
);

/**
 * Only the dashboard's own files may run or be fetched: no inline script, no other origin, no framing.
 * (React sets styles through the DOM, which `style-src 'self'` allows.)
 */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * The dashboard's static files, and its index.html for any other GET a browser navigates to (Accept
 * names text/html: the dashboard's own routes, e.g. /projects/<id>); other clients get the API's 404.
 * Content-hashed assets are cached for good.
 */
export function serveDashboard(dir: string): express.RequestHandler {
  const assets = express.static(dir, {
    index: false,
    setHeaders(res, file) {
      if (file.includes(`${path.sep}assets${path.sep}`))
        res.setHeader('cache-control', 'public, max-age=31536000, immutable');
    },
  });
  const indexFile = path.join(dir, 'index.html');
  return (req, res, next) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next();
    res.setHeader('content-security-policy', DASHBOARD_CSP);
    assets(req, res, () => {
      if (!req.headers.accept?.includes('text/html')) return next();
      if (!fs.existsSync(indexFile)) {
        res
          .status(404)
          .type('text/plain')
          .send(
            'the dashboard is not built: run `pnpm --filter @coderunner/web build` (pnpm start does it)\n',
          );
        return;
      }
      res.setHeader('cache-control', 'no-cache');
      res.sendFile(indexFile);
    });
  };
}
