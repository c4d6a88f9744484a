/**
 * The proxy in front of a cloud sandbox's app: a loopback HTTPS "edge" whose certificate is only for the
 * sandbox's host name (as AgentSphere's is), answering only requests whose Host is that name (it routes
 * by Host). Through the proxy, HTTP and websockets reach it; the app still learns the public host.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAppProxy } from '../src/proxy';

const ID = '0b6c3f0e-8d1e-4a57-9a3c-6f1f2a9b7c11';
const SANDBOX_HOST = '8080-i0123456789ab-cdef0123.agentsphere.test';

let cert: string;
let edge: https.Server;
let target: string;
let proxy: ReturnType<typeof createAppProxy>;
let front: http.Server;
let frontPort: number;
/** The TLS server names (SNI) the edge was asked for. */
const serverNames: (string | false)[] = [];

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'proxy-tls-'));
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        `/CN=${SANDBOX_HOST}`,
        '-addext',
        `subjectAltName=DNS:${SANDBOX_HOST}`,
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
    const key = readFileSync(join(dir, 'key.pem'), 'utf8');
    edge = https.createServer({ key, cert }, (req, res) => {
      // The edge routes by Host: another name is not one of its sandboxes.
      if (req.headers.host?.split(':')[0] !== SANDBOX_HOST) {
        res.writeHead(404).end('unknown sandbox');
        return;
      }
      res.end(JSON.stringify(req.headers));
    });
    edge.on('secureConnection', (socket: tls.TLSSocket) =>
      serverNames.push((socket as tls.TLSSocket & { servername: string | false }).servername),
    );
    edge.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
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
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  target = `https://${SANDBOX_HOST}:${await listen(edge)}`;
  // The sandbox's name resolves to the loopback edge, and its certificate is trusted: nothing else differs.
  const upstreamAgent = new https.Agent({
    ca: cert,
    lookup: ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) =>
      options.all
        ? callback(null, [{ address: '127.0.0.1', family: 4 }])
        : callback(null, '127.0.0.1', 4)) as never,
  });
  proxy = createAppProxy({ deployment: async () => target, project: async () => null }, { upstreamAgent });
  front = http.createServer((req, res) => proxy.web(req, res, () => res.end('not an app')));
  front.on('upgrade', proxy.upgrade);
  frontPort = await listen(front);
});

afterAll(async () => {
  proxy?.close();
  for (const server of [front, edge]) {
    if (!server) continue;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

describe('a cloud app behind TLS', () => {
  it('is reached with the sandbox host as TLS name and Host; the app learns the public host', async () => {
    const publicHost = `${ID}.localhost:${frontPort}`;
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.get(
        { host: '127.0.0.1', port: frontPort, path: '/', headers: { host: publicHost } },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk: string) => {
            text += chunk;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
    });
    expect(status, body).toBe(200);
    const seen = JSON.parse(body) as Record<string, string>;
    expect(seen.host).toBe(new URL(target).host);
    expect(seen['x-forwarded-host']).toBe(publicHost);
    expect(serverNames).toContain(SANDBOX_HOST);
    expect(serverNames).not.toContain(`${ID}.localhost`);
  });

  it('passes websockets with the same names', async () => {
    const publicHost = `${ID}.localhost:${frontPort}`;
    const received = await new Promise<string>((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1',
        port: frontPort,
        path: '/live',
        headers: {
          host: publicHost,
          connection: 'Upgrade',
          upgrade: 'websocket',
          'sec-websocket-key': crypto.randomBytes(16).toString('base64'),
          'sec-websocket-version': '13',
        },
      });
      req.on('error', reject);
      req.on('response', (res) => reject(new Error(`no upgrade: ${res.statusCode}`)));
      req.on('upgrade', (_res, socket, head) => {
        let text = head.toString();
        let pinged = false;
        const check = () => {
          if (!pinged && text.includes('}\n')) {
            pinged = true;
            socket.write('ping');
          }
          if (text.endsWith('}\nping')) socket.end();
        };
        check();
        socket.setEncoding('utf8');
        socket.on('data', (chunk: string) => {
          text += chunk;
          check();
        });
        socket.on('close', () => resolve(text));
      });
      req.end();
    });
    expect(received.endsWith('}\nping')).toBe(true);
    const seen = JSON.parse(received.slice(0, -'ping'.length)) as Record<string, string>;
    expect(seen.host).toBe(new URL(target).host);
    expect(seen['x-forwarded-host']).toBe(publicHost);
  });
});
