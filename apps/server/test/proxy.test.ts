/**
 * The proxy for apps' URLs, between a real client and a real HTTP "app" (no database needed): what
 * the app is told about the request.
 */
import http from 'node:http';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAppProxy } from '../src/proxy';

const ID = '0b6c3f0e-8d1e-4a57-9a3c-6f1f2a9b7c11';
let app: http.Server;
let target: string;

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

beforeAll(async () => {
  // The "app" answers with the request headers it received.
  app = http.createServer((req, res) => res.end(JSON.stringify(req.headers)));
  target = `http://127.0.0.1:${await listen(app)}`;
});
afterAll(() => new Promise<void>((resolve) => app.close(() => resolve())));

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
