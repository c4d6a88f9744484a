import net from 'node:net';

/**
 * A TCP port that is free on `host` right now (the OS picks it). Another process may take it before
 * it is bound: an app then fails to start and its deployment says so; a cluster says the port is busy.
 */
export function findFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
