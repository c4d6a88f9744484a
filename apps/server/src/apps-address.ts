/**
 * The address isolated apps are published on (APPS_ADDRESS, 127.77.0.1) is the apps' site, never the
 * dashboard's: a server bound to 0.0.0.0 is reachable there too, and a dashboard opened at
 * http://127.77.0.1:8080 would share its cookies (browsers do not separate them by port) with every
 * app at http://127.77.0.1:<port>. So nothing is served on it: 421 Misdirected Request.
 */
import { APPS_ADDRESS, isAppsAddress } from '@coderunner/sandbox';
import type express from 'express';

export const APPS_ADDRESS_REFUSAL = `this server does not answer on ${APPS_ADDRESS}, the address reserved for apps: open the dashboard at its own address (e.g. http://localhost:<PORT>)\n`;

export function refuseAppsAddress(req: express.Request, res: express.Response, next: () => void): void {
  if (!isAppsAddress(req.socket.localAddress)) {
    next();
    return;
  }
  res.status(421).set('content-type', 'text/plain; charset=utf-8').set('connection', 'close');
  res.end(APPS_ADDRESS_REFUSAL);
}
