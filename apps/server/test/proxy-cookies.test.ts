/**
 * The dashboard's session cookie never crosses the app proxy (issue #20, item 2): not to an app in a
 * request's Cookie header, not from an app in a Set-Cookie, over HTTP and websocket upgrades alike.
 * A real client, the real proxy in a front server, and a real HTTP "app" that reports what it got.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAppProxy } from '../src/proxy';
import { withoutSessionCookie } from '../src/proxy-cookies';

const ID = '0b6c3f0e-8d1e-4a57-9a3c-6f1f2a9b7c11';
const APP_SET_COOKIES = [
  'coderunner_session=planted-by-the-app; Path=/trpc',
  'app_pref=dark; Path=/',
  ' CodeRunner_Session =look-alike; Path=/',
];
let app: http.Server;
let front: http.Server;
let proxy: ReturnType<typeof createAppProxy>;
let port = 0;

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

beforeAll(async () => {
  // The "app" tells which Cookie header it received, and sets cookies of its own and the dashboard's.
  app = http.createServer((req, res) => {
    res.setHeader('set-cookie', APP_SET_COOKIES);
    res.end(JSON.stringify({ cookie: req.headers.cookie ?? null }));
  });
  app.on('upgrade', (req, socket: net.Socket) => {
    socket.end(
      [
        'HTTP/1.1 101 Switching Protocols',
        'Upgrade: websocket',
        'Connection: Upgrade',
        `X-Saw-Cookie: ${JSON.stringify(req.headers.cookie ?? null)}`,
        ...APP_SET_COOKIES.map((c) => `Set-Cookie: ${c}`),
        '',
        '',
      ].join('\r\n'),
    );
  });
  const target = `http://127.0.0.1:${await listen(app)}`;
  proxy = createAppProxy({ deployment: async () => target, project: async () => null });
  front = http.createServer((req, res) => proxy.web(req, res, () => res.end('not an app')));
  front.on('upgrade', (req, socket, head) => void proxy.upgrade(req, socket, head));
  port = await listen(front);
});

afterAll(async () => {
  proxy.close();
  await new Promise<void>((resolve) => front.close(() => resolve()));
  await new Promise<void>((resolve) => app.close(() => resolve()));
});

/** One GET through the proxy with `cookie`: what the app saw, and the Set-Cookie lines that came back. */
function get(cookie: string): Promise<{ saw: string | null; setCookies: string[] }> {
  return new Promise((resolve, reject) => {
    http
      .get(
        { host: '127.0.0.1', port, path: '/', headers: { host: `${ID}.localhost:${port}`, cookie } },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk: string) => {
            text += chunk;
          });
          res.on('end', () =>
            resolve({
              saw: (JSON.parse(text) as { cookie: string | null }).cookie,
              setCookies: res.headers['set-cookie'] ?? [],
            }),
          );
        },
      )
      .on('error', reject);
  });
}

/** A websocket handshake through the proxy with `cookie`: the response head's lines. */
function upgrade(cookie: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
      const end = text.indexOf('\r\n\r\n');
      if (end >= 0) {
        socket.destroy();
        resolve(text.slice(0, end).split('\r\n'));
      }
    });
    socket.on('error', reject);
    socket.write(
      [
        'GET /ws HTTP/1.1',
        `Host: ${ID}.localhost:${port}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version: 13',
        `Cookie: ${cookie}`,
        '',
        '',
      ].join('\r\n'),
    );
  });
}

describe("the app proxy and the dashboard's session cookie", () => {
  it('never forwards coderunner_session to an app; its other cookies pass', async () => {
    const { saw } = await get('theme=light; coderunner_session=bobs-token; app_pref=dark');
    expect(saw).toBe('theme=light; app_pref=dark');
    // Only the session: the app gets no Cookie header at all.
    expect((await get('coderunner_session=bobs-token')).saw).toBeNull();
  });

  it("drops an app's Set-Cookie for coderunner_session (any case, any spaces); its own pass", async () => {
    const { setCookies } = await get('theme=light');
    expect(setCookies).toEqual(['app_pref=dark; Path=/']);
  });

  it('does the same on a websocket handshake', async () => {
    const head = await upgrade('coderunner_session=bobs-token; app_pref=dark');
    expect(head[0]).toBe('HTTP/1.1 101 Switching Protocols');
    expect(head.find((l) => /^x-saw-cookie:/i.test(l))).toMatch(/: "app_pref=dark"$/);
    expect(head.filter((l) => /^set-cookie:/i.test(l))).toEqual(['set-cookie: app_pref=dark; Path=/']);
  });
});

describe('withoutSessionCookie', () => {
  it.each([
    ['coderunner_session=x', undefined],
    ['a=1;coderunner_session=x;b=2', 'a=1; b=2'],
    ['a=1;  CODERUNNER_SESSION = x ', 'a=1'],
    ['coderunner_session_other=1; a', 'coderunner_session_other=1; a'],
    ['; ;', undefined],
  ])('%j → %j', (cookie, expected) => {
    expect(withoutSessionCookie(cookie)).toBe(expected);
  });
});
