import type http from 'node:http';
import type https from 'node:https';
import type { Duplex } from 'node:stream';
import { projectKeyOfHost, staticDirOf } from '@coderunner/api';
import { createProxyServer } from 'http-proxy-3';
import proxyAddr from 'proxy-addr';
import { dropSessionSetCookie, stripSessionCookie } from './proxy-cookies';
import { serveStaticSite } from './static-site';

const DEPLOYMENT_HOST = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\./i;

/** The deployment a request is for, from its Host header (`<deployment id>.localhost:8080`). */
export function deploymentIdOfHost(host: string | undefined): string | null {
  return DEPLOYMENT_HOST.exec(host ?? '')?.[1]?.toLowerCase() ?? null;
}

/** What a Host header names: a deployment (`<id>.localhost`) or a project (`<slug>.localhost`). */
function routeOf(host: string | undefined): { kind: 'deployment' | 'project'; name: string } | null {
  const id = deploymentIdOfHost(host);
  if (id) return { kind: 'deployment', name: id };
  const key = projectKeyOfHost(host);
  return key ? { kind: 'project', name: key } : null;
}

export interface AppRoutes {
  /** The app of a RUNNING deployment, or null. */
  deployment(id: string): Promise<string | null>;
  /** The app of the project's current deployment (its key: see @coderunner/api's projectKey), or null. */
  project(key: string): Promise<string | null>;
  /** With no app to send to: seconds until the app is tried again when it is restarting, else null. */
  restarting?(route: { kind: 'deployment' | 'project'; name: string }): Promise<number | null>;
}

/**
 * Serves deployments' and projects' public URLs on this server: a request whose Host names a
 * deployment goes to that deployment's app, one naming a project to its current deployment's app
 * (looked up per request, so a redeploy switches at once); Host header and websockets passed through.
 */
export interface AppProxyOptions {
  /** TRUST_PROXY: only from these peers are a request's X-Forwarded-* headers passed on to the app. */
  trustProxy?: string[];
  /** For https upstreams (cloud sandboxes): e.g. keep-alive, or in tests a CA and a DNS lookup. */
  upstreamAgent?: https.Agent;
}

const FORWARDED = [
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'forwarded',
];

export function createAppProxy(routes: AppRoutes, opts: AppProxyOptions = {}) {
  const trusted = proxyAddr.compile(opts.trustProxy ?? []);
  /**
   * A client's own X-Forwarded-* headers (say X-Forwarded-Host: bank.example) must not reach the app
   * as if this server had set them: dropped unless the peer is a trusted proxy; this server then
   * adds its own (xfwd) after the trusted ones.
   */
  const dropUntrustedForwarding = (req: http.IncomingMessage) => {
    if (trusted(req.socket.remoteAddress ?? '', 0)) return;
    for (const name of FORWARDED) delete req.headers[name];
  };
  const resolve = (route: { kind: 'deployment' | 'project'; name: string }) =>
    (route.kind === 'deployment' ? routes.deployment(route.name) : routes.project(route.name)).catch(
      () => null,
    );
  // http-proxy-3: the maintained rewrite of http-proxy (no release since 2020), same API; its 2.x needs Node 22.
  const proxy = createProxyServer({ xfwd: true, ws: true, proxyTimeout: 60_000 });
  // The dashboard's session cookie never reaches an app, nor is set by one (proxy-cookies.ts).
  proxy.on('proxyRes', (proxyRes) => dropSessionSetCookie(proxyRes.headers));
  proxy.on('proxyReqWs', (proxyReq) => {
    for (const event of ['upgrade', 'response'] as const)
      proxyReq.prependListener(event, (proxyRes: http.IncomingMessage) =>
        dropSessionSetCookie(proxyRes.headers),
      );
  });
  proxy.on('error', (_err, _req, res) => {
    if ('writeHead' in res && !res.headersSent) {
      res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('the app did not answer\n');
    } else {
      res.destroy();
    }
  });
  // A client that leaves before the app has accepted its upgrade: abort the request to the app, or the
  // app's side of the websocket would be connected to a closed socket and stay open.
  proxy.on('proxyReqWs', (proxyReq, _req, socket) => {
    socket.once('close', () => proxyReq.destroy());
  });
  /**
   * A cloud sandbox's app (`https://<port>-<sandbox>.<domain>`) sits behind the service's TLS edge,
   * which takes its certificate name from SNI and routes by Host: both must be the sandbox's host
   * (changeOrigin; Node takes SNI from the Host it sends), or every request fails (502). The app still
   * learns the public host from X-Forwarded-Host. A local app (http://127.0.0.1) keeps the client's Host.
   */
  const upstream = (target: string) =>
    target.startsWith('https:')
      ? { target, changeOrigin: true, ...(opts.upstreamAgent ? { agent: opts.upstreamAgent } : {}) }
      : { target };
  // Upgraded sockets are no longer the HTTP server's connections: closeAllConnections() leaves them be.
  const upgraded = new Set<Duplex>();
  const notRunning = async (
    res: http.ServerResponse,
    route: { kind: 'deployment' | 'project'; name: string },
  ) => {
    const restartIn = await routes.restarting?.(route).catch(() => null);
    if (res.headersSent || res.destroyed) return;
    if (restartIn) {
      res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'retry-after': String(restartIn) });
      res.end(`the app exited and is restarting; try again in ${restartIn} s\n`);
      return;
    }
    res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'retry-after': '5' });
    res.end(
      route.kind === 'deployment'
        ? `deployment ${route.name} is not running\n`
        : 'no deployment of this project is running\n',
    );
  };
  return {
    /** Express-style middleware: handles requests for deployments, passes the rest on (synchronously). */
    web(req: http.IncomingMessage, res: http.ServerResponse, next: () => void): void {
      const route = routeOf(req.headers.host);
      if (!route) {
        next();
        return;
      }
      dropUntrustedForwarding(req);
      stripSessionCookie(req);
      resolve(route)
        .then((target) => {
          if (!target) return notRunning(res, route);
          // A static site: its files, served here (no app behind it).
          const dir = staticDirOf(target);
          if (dir) serveStaticSite(dir, req, res);
          else proxy.web(req, res, upstream(target));
        })
        // Never an unhandled rejection (the end of the process): whatever failed, this request ends.
        .catch(() => res.destroy());
    },
    /** For the HTTP server's 'upgrade' event (websockets). */
    upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
      // Node takes its own error listener off a socket it hands to 'upgrade': without this one, a
      // client that resets the connection mid-handshake is an uncaught exception, the end of the process.
      socket.on('error', () => socket.destroy());
      upgraded.add(socket);
      socket.once('close', () => upgraded.delete(socket));
      const route = routeOf(req.headers.host);
      void (async () => {
        const target = route ? await resolve(route) : null;
        if (socket.destroyed) return; // the client left during the lookup
        if (!target || staticDirOf(target)) {
          socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
          return;
        }
        dropUntrustedForwarding(req);
        stripSessionCookie(req);
        // http-proxy sets X-Forwarded-Host for HTTP only; an app behind changeOrigin needs it here too.
        if (target.startsWith('https:') && !req.headers['x-forwarded-host'] && req.headers.host) {
          req.headers['x-forwarded-host'] = req.headers.host;
        }
        proxy.ws(req, socket, head, upstream(target));
      })().catch(() => socket.destroy());
    },
    /** Ends the websockets it passes (which never end by themselves, and would hold a server's close). */
    close(): void {
      for (const socket of upgraded) socket.destroy();
      proxy.close();
    },
  };
}
