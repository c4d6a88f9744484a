/**
 * The proxy for apps' URLs, between a real client and a real HTTP "app" (no database needed): what
 * the app is told about the request.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAppProxy } from '../src/proxy';

const ID = '0b6c3f0e-8d1e-4a57-9a3c-6f1f2a9b7c11';
let app: http.Server;
let target: string;
let socketsApp: http.Server;
let socketsTarget: string;

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

beforeAll(async () => {
  // The "app" answers with the request headers it received.
  app = http.createServer((req, res) => res.end(JSON.stringify(req.headers)));
  target = `http://127.0.0.1:${await listen(app)}`;
  // A websocket "app": accepts the handshake, sends the request headers it received, then echoes.
  socketsApp = http.createServer((_req, res) => res.end('not a websocket'));
  socketsApp.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    socket.on('error', () => socket.destroy());
    const accept = crypto
      .createHash('sha1')
      .update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest('base64');
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\n\r\n${JSON.stringify(req.headers)}\n`,
    );
    socket.pipe(socket);
  });
  socketsTarget = `http://127.0.0.1:${await listen(socketsApp)}`;
});
afterAll(async () => {
  for (const server of [app, socketsApp]) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

/** A front server with the proxy (TRUST_PROXY = `trustProxy`), and one GET through it. */
async function through(
  trustProxy: string[],
  headers: Record<string, string>,
): Promise<Record<string, string>> {
  const proxy = createAppProxy({ deployment: async () => target, project: async () => null }, { trustProxy });
  const front = http.createServer((req, res) => proxy.web(req, res, () => res.end('not an app')));
  const port = await listen(front);
  try {
    // http.request, not fetch: fetch does not let a caller set Host.
    return await new Promise((resolve, reject) => {
      const req = http.get(
        { host: '127.0.0.1', port, path: '/', headers: { host: `${ID}.localhost:${port}`, ...headers } },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk: string) => {
            text += chunk;
          });
          res.on('end', () => resolve(JSON.parse(text) as Record<string, string>));
        },
      );
      req.on('error', reject);
    });
  } finally {
    proxy.close();
    await new Promise<void>((resolve) => front.close(() => resolve()));
  }
}

const SPOOFED = {
  'x-forwarded-for': '6.6.6.6',
  'x-forwarded-host': 'bank.example',
  'x-forwarded-proto': 'https',
  forwarded: 'for=6.6.6.6;host=bank.example;proto=https',
};

describe('app proxy', () => {
  it("drops a client's own X-Forwarded-* and Forwarded headers, and sets its own", async () => {
    const seen = await through([], SPOOFED);
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-host']).toMatch(new RegExp(`^${ID}\\.localhost:\\d+$`));
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen.forwarded).toBeUndefined();
    expect(seen.host).toMatch(new RegExp(`^${ID}\\.localhost:\\d+$`)); // the Host passes through
  });

  it('keeps them from a trusted proxy (TRUST_PROXY), adding its own after them', async () => {
    const seen = await through(['loopback'], SPOOFED);
    expect(seen['x-forwarded-for']).toBe('6.6.6.6,127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('https,http');
    expect(seen.forwarded).toBe(SPOOFED.forwarded);
  });
});

/**
 * A front server with the proxy in front of the app at `appTarget`; one websocket handshake through
 * it with `headers`, then 'ping': everything the client received, once the echo came or the server
 * closed.
 */
async function upgradeThrough(appTarget: string, headers: Record<string, string> = {}): Promise<string> {
  const proxy = createAppProxy({ deployment: async () => appTarget, project: async () => null });
  const front = http.createServer((_req, res) => res.end('not an app'));
  front.on('upgrade', proxy.upgrade);
  const port = await listen(front);
  try {
    return await new Promise<string>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      let received = '';
      let pinged = false;
      socket.setEncoding('utf8');
      socket.on('error', reject);
      socket.on('connect', () =>
        socket.write(
          `GET /live HTTP/1.1\r\nHost: ${ID}.localhost:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
            Object.entries(headers)
              .map(([k, v]) => `${k}: ${v}\r\n`)
              .join('') +
            '\r\n',
        ),
      );
      socket.on('data', (chunk: string) => {
        received += chunk;
        // The websocket app's first message (the headers it saw) ends with '}\n'.
        if (!pinged && received.includes('}\n')) {
          pinged = true;
          socket.write('ping');
        }
        if (received.endsWith('}\nping')) socket.end();
      });
      socket.on('close', () => resolve(received));
    });
  } finally {
    proxy.close();
    front.closeAllConnections();
    await new Promise<void>((resolve) => front.close(() => resolve()));
  }
}

describe('websockets through the app proxy', () => {
  it("pass both ways, with the proxy's own forwarding headers only", async () => {
    const received = await upgradeThrough(socketsTarget, SPOOFED);
    expect(received).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(received.endsWith('}\nping')).toBe(true);
    const seen = JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4, -'ping'.length)) as Record<
      string,
      string
    >;
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.forwarded).toBeUndefined();
    expect(seen.host).toMatch(new RegExp(`^${ID}\\.localhost:\\d+$`));
  });

  it('relay the answer of an app that does not speak websockets, and close', async () => {
    const received = await upgradeThrough(target);
    expect(received).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(received).toContain('"upgrade":"websocket"'); // the app's body: the headers it saw
  });
});

describe('a websocket client that leaves while the app is accepting it', () => {
  it('leaves no connection to the app open', async () => {
    // The app takes its time to accept; each client leaves (RST or FIN) as soon as the app has its request.
    const leaveNow: (() => void)[] = [];
    const open = new Set<net.Socket>();
    const slowApp = http.createServer();
    slowApp.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
      open.add(socket);
      socket.on('close', () => open.delete(socket));
      socket.on('error', () => socket.destroy());
      leaveNow.shift()?.();
      const accept = crypto
        .createHash('sha1')
        .update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
        .digest('base64');
      setTimeout(() => {
        socket.write(
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
        );
        socket.pipe(socket);
      }, 100);
    });
    const slowTarget = `http://127.0.0.1:${await listen(slowApp)}`;
    const proxy = createAppProxy({ deployment: async () => slowTarget, project: async () => null });
    const front = http.createServer();
    front.on('upgrade', proxy.upgrade);
    const port = await listen(front);
    try {
      for (let i = 0; i < 10; i++) {
        await new Promise<void>((resolve) => {
          const socket = net.connect(port, '127.0.0.1', () =>
            socket.write(
              `GET / HTTP/1.1\r\nHost: ${ID}.localhost:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
                `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
            ),
          );
          leaveNow.push(() => (i % 2 ? socket.resetAndDestroy() : socket.destroy()));
          socket.on('error', () => {});
          socket.on('close', () => resolve());
        });
      }
      for (const deadline = Date.now() + 10_000; open.size > 0 && Date.now() < deadline; )
        await new Promise((r) => setTimeout(r, 100));
      expect(open.size, 'connections still open between the proxy and the app').toBe(0);
    } finally {
      for (const socket of open) socket.destroy();
      proxy.close();
      for (const server of [front, slowApp]) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    }
  });
});
