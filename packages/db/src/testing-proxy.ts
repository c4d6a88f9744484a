import net from 'node:net';

/**
 * A TCP proxy for fault tests: put it between a client and PostgreSQL, then `pause()` to stall every
 * connection (bytes are held, nothing is refused) or `cut()` to reset them all.
 */
export interface PausableProxy {
  port: number;
  pause(): void;
  resume(): void;
  cut(): void;
  close(): Promise<void>;
}

export async function startPausableProxy(
  targetPort: number,
  targetHost = '127.0.0.1',
): Promise<PausableProxy> {
  const sockets = new Set<net.Socket>();
  const pipes = new Set<{ client: net.Socket; upstream: net.Socket }>();
  let paused = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost);
    const pair = { client, upstream };
    pipes.add(pair);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        sockets.delete(s);
        pipes.delete(pair);
        client.destroy();
        upstream.destroy();
      });
    }
    // Piped now unless paused; resume() pipes every connection then (piping twice doubles bytes).
    if (paused) {
      client.pause();
      upstream.pause();
    } else {
      client.pipe(upstream);
      upstream.pipe(client);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    pause() {
      paused = true;
      for (const { client, upstream } of pipes) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
    },
    resume() {
      paused = false;
      for (const { client, upstream } of pipes) {
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
        upstream.resume();
      }
    },
    cut() {
      for (const s of sockets) s.destroy();
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
