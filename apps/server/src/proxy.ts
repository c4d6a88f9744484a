import type http from 'node:http';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';

const DEPLOYMENT_HOST = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\./i;

/** The deployment a request is for, from its Host header (`<deployment id>.localhost:8080`). */
export function deploymentIdOfHost(host: string | undefined): string | null {
  return DEPLOYMENT_HOST.exec(host ?? '')?.[1]?.toLowerCase() ?? null;
}

/**
 * Serves deployments' public URLs on this server: a request whose Host names a deployment goes to
 * that deployment's app, Host header and websockets passed through.
 */
export function createAppProxy(resolve: (deploymentId: string) => Promise<string | null>) {
  const proxy = httpProxy.createProxyServer({ xfwd: true, ws: true, proxyTimeout: 60_000 });
  proxy.on('error', (_err, _req, res) => {
    if ('writeHead' in res && !res.headersSent) {
      res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('the app did not answer\n');
    } else {
      res.destroy();
    }
  });
  const notRunning = (res: http.ServerResponse, id: string) => {
    res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'retry-after': '5' });
    res.end(`deployment ${id} is not running\n`);
  };
  return {
    /** Express-style middleware: handles requests for deployments, passes the rest on (synchronously). */
    web(req: http.IncomingMessage, res: http.ServerResponse, next: () => void): void {
      const id = deploymentIdOfHost(req.headers.host);
      if (!id) {
        next();
        return;
      }
      void resolve(id)
        .catch(() => null)
        .then((target) => (target ? proxy.web(req, res, { target }) : notRunning(res, id)));
    },
    /** For the HTTP server's 'upgrade' event (websockets). */
    async upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer) {
      const id = deploymentIdOfHost(req.headers.host);
      const target = id ? await resolve(id).catch(() => null) : null;
      if (!target) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
        return;
      }
      proxy.ws(req, socket, head, { target });
    },
    close: () => proxy.close(),
  };
}
