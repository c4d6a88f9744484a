/** waitForApp against real sockets: TCP readiness, health checks, dead apps and timeouts. */
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { findFreePort } from '../src/local';
import { AppNotReadyError, waitForApp } from '../src/readiness';

const servers: (net.Server | http.Server)[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

async function listen<T extends net.Server>(server: T, port = 0): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

/** An HTTP server answering `status` on every path; counts the requests. */
async function httpServer(status: () => number): Promise<{ port: number; requests: () => number }> {
  let count = 0;
  const server = http.createServer((_req, res) => {
    count++;
    res.writeHead(status(), status() >= 300 && status() < 400 ? { location: '/elsewhere' } : {});
    res.end();
  });
  return { port: await listen(server), requests: () => count };
}

describe('waitForApp', () => {
  it('is ready as soon as the port accepts connections', async () => {
    const port = await listen(net.createServer((socket) => socket.end()));
    await waitForApp({ host: '127.0.0.1', port, timeoutMs: 2_000 });
  });

  it('waits for an app that starts listening a little later', async () => {
    const port = await findFreePort();
    setTimeout(
      () =>
        void listen(
          net.createServer((socket) => socket.end()),
          port,
        ),
      300,
    );
    const started = Date.now();
    await waitForApp({ host: '127.0.0.1', port, timeoutMs: 5_000, isAlive: () => true });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  it('with a health-check path, is ready on 2xx or 3xx only', async () => {
    for (const status of [200, 204, 302]) {
      const ok = await httpServer(() => status);
      await waitForApp({ host: '127.0.0.1', port: ok.port, healthcheckPath: '/health', timeoutMs: 2_000 });
    }
    const failing = await httpServer(() => 500);
    const error = await waitForApp({
      host: '127.0.0.1',
      port: failing.port,
      healthcheckPath: '/health',
      timeoutMs: 600,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AppNotReadyError);
    expect((error as Error).message).toBe(
      `the app did not answer GET /health on port ${failing.port} with a 2xx or 3xx status within 0.6 s (last answer: HTTP 500)`,
    );
    // Probes are spaced by the polling interval: about 8 in 600 ms, not a flood.
    expect(failing.requests()).toBeGreaterThanOrEqual(3);
    expect(failing.requests()).toBeLessThanOrEqual(12);
  });

  it('becomes ready when the health check turns healthy', async () => {
    let healthy = false;
    setTimeout(() => {
      healthy = true;
    }, 300);
    const server = await httpServer(() => (healthy ? 200 : 503));
    await waitForApp({ host: '127.0.0.1', port: server.port, healthcheckPath: '/', timeoutMs: 5_000 });
  });

  it('fails fast when the app died', async () => {
    const port = await findFreePort();
    const started = Date.now();
    await expect(
      waitForApp({ host: '127.0.0.1', port, timeoutMs: 30_000, isAlive: async () => false }),
    ).rejects.toThrow(`the app exited before listening on port ${port}`);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('says how long it waited when the app never listens', async () => {
    const port = await findFreePort();
    await expect(
      waitForApp({ host: '127.0.0.1', port, timeoutMs: 500, isAlive: () => true }),
    ).rejects.toThrow(`the app did not listen on port ${port} within 0.5 s`);
  });

  it('stops waiting when aborted', async () => {
    const port = await findFreePort();
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('deployment destroyed')), 200);
    await expect(
      waitForApp({ host: '127.0.0.1', port, timeoutMs: 30_000, signal: controller.signal }),
    ).rejects.toThrow('deployment destroyed');
  });
});
