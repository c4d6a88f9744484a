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
  /**
   * While on, every new connection's start-up ends with PostgreSQL's `ReadyForQuery` and, in the
   * same TCP write, a FATAL `57P01` ("terminating connection due to administrator command"), then
   * the connection closes: what a client sees when the server shuts down just as it connects.
   */
  poisonStartups(on: boolean): void;
  /** How many connections were ended that way so far. */
  readonly poisoned: number;
  close(): Promise<void>;
}

/** An ErrorResponse message: FATAL 57P01, as PostgreSQL sends when it is shut down. */
function adminShutdownError(): Buffer {
  const fields = Buffer.concat([
    Buffer.from('SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0', 'utf8'),
    Buffer.from([0]),
  ]);
  const header = Buffer.alloc(5);
  header.write('E', 0, 'ascii');
  header.writeInt32BE(4 + fields.length, 1);
  return Buffer.concat([header, fields]);
}

/**
 * Relays the server's start-up messages (authentication exchanges included) until the first
 * ReadyForQuery ('Z'), then writes it together with a FATAL error in one chunk and closes both sides.
 */
function poisonAfterReady(client: net.Socket, upstream: net.Socket, onPoisoned: () => void): void {
  client.pipe(upstream);
  let pending = Buffer.alloc(0);
  let done = false;
  upstream.on('data', (chunk: Buffer) => {
    if (done) return;
    pending = Buffer.concat([pending, chunk]);
    let offset = 0;
    while (pending.length - offset >= 5) {
      const type = pending[offset];
      const length = pending.readInt32BE(offset + 1);
      const end = offset + 1 + length;
      if (pending.length < end) break;
      if (type === 0x5a /* Z */) {
        done = true;
        client.end(Buffer.concat([pending.subarray(0, end), adminShutdownError()]));
        upstream.destroy();
        onPoisoned();
        return;
      }
      offset = end;
    }
    // Whole messages before the ReadyForQuery go through at once: a password exchange waits for them.
    if (offset > 0) {
      client.write(pending.subarray(0, offset));
      pending = pending.subarray(offset);
    }
  });
}

export async function startPausableProxy(
  targetPort: number,
  targetHost = '127.0.0.1',
): Promise<PausableProxy> {
  const sockets = new Set<net.Socket>();
  const pipes = new Set<{ client: net.Socket; upstream: net.Socket }>();
  let paused = false;
  let poison = false;
  let poisoned = 0;
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
    if (poison) {
      pipes.delete(pair); // never piped again by resume()
      poisonAfterReady(client, upstream, () => poisoned++);
      return;
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
    poisonStartups(on: boolean) {
      poison = on;
    },
    get poisoned() {
      return poisoned;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
