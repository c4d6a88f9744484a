/**
 * Websocket upgrades against the server as a child process (the way `pnpm start` runs it), in front
 * of an app that speaks websockets and one that does not. Clients that vanish mid-handshake: a reset
 * (RST) or a close (FIN) at every stage of the handshake, for every kind of host the server answers
 * upgrades on (its own, a deployment's URL, a project's URL); afterwards the process is still
 * serving, logged no crash and no error, and no connection to the app outlived its client. Then a
 * shutdown with a websocket open.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { type CodeRunnerClient, createClient } from '@coderunner/api/client';
import { User } from '@coderunner/db';
import { createMigratedTestDatabase, freePort, type MigratedTestDatabase } from '@coderunner/db/testing';
import { createLocalProvider } from '@coderunner/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appFolder,
  deployFolder,
  getViaProxy,
  logText,
  versionedApp,
  waitForStatus,
} from './fixtures/deploy-helpers';
import { type ServerProcess, startServerProcess } from './load/fixtures/server-process';

/**
 * An app that accepts websockets (a hand-made handshake, then echoes every byte), says how many of
 * them are open at `/open`, and answers 'sockets' to plain requests.
 */
const websocketApp = () =>
  appFolder({
    'package.json': JSON.stringify({ name: 'sockets', scripts: { start: 'node server.js' } }),
    'server.js': `const http = require('http');
const crypto = require('crypto');
let open = 0;
const server = http.createServer((req, res) => res.end(req.url === '/open' ? String(open) : 'sockets'));
server.on('upgrade', (req, socket) => {
  open++;
  socket.on('close', () => open--);
  socket.on('error', () => {});
  const accept = crypto.createHash('sha1')
    .update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n' +
    'Sec-WebSocket-Accept: ' + accept + '\\r\\n\\r\\n');
  socket.pipe(socket);
});
server.listen(process.env.PORT, '127.0.0.1');`,
  });

let db: MigratedTestDatabase;
let dataDir: string;
let server: ServerProcess;
let client: CodeRunnerClient;
/** Host headers the server answers upgrades for, one of each kind. */
let hosts: {
  server: string;
  noSuchDeployment: string;
  plainDeployment: string;
  plainProject: string;
  socketsDeployment: string;
  socketsProject: string;
};

async function deployProject(name: string, dir: string) {
  const project = await client.projects.create.mutate({ name });
  const created = await deployFolder(client, project.id, dir);
  const d = await waitForStatus(client, created.id, ['RUNNING', 'FAILED']);
  expect(d.status, await logText(client, created.id)).toBe('RUNNING');
  return { deployment: d.id, projectHost: new URL(project.url!).hostname };
}

beforeAll(async () => {
  db = await createMigratedTestDatabase();
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-vanishing-'));
  fs.chmodSync(dataDir, 0o711);
  server = await startServerProcess({
    port: await freePort(),
    env: {
      DATABASE_URL: db.url,
      CODERUNNER_DATA_DIR: dataDir,
      CODERUNNER_AUTH_SECRET: 'vanishing-test-secret-vanishing-test-secret',
      SHUTDOWN_TIMEOUT_MS: '2000',
      // A busy machine starts apps slowly.
      CODERUNNER_START_TIMEOUT_S: '120',
    },
  });
  const anon = createClient({ url: server.trpc });
  const { token, user } = await anon.auth.register.mutate({
    email: 'vanishing@example.com',
    password: 'vanishing password',
  });
  // Two apps running at once: more than the free plan's one.
  await User.update({ planType: 'personal' }, { where: { id: user.id } });
  client = createClient({ url: server.trpc, token });
  const plain = await deployProject('plain', versionedApp('plain'));
  const sockets = await deployProject('sockets', websocketApp());
  const port = server.port;
  hosts = {
    server: `localhost:${port}`,
    noSuchDeployment: `${crypto.randomUUID()}.localhost:${port}`,
    plainDeployment: `${plain.deployment}.localhost:${port}`,
    plainProject: `${plain.projectHost}:${port}`,
    socketsDeployment: `${sockets.deployment}.localhost:${port}`,
    socketsProject: `${sockets.projectHost}:${port}`,
  };
}, 300_000);

afterAll(async () => {
  await server?.stop(5_000);
  // Apps outlive their servers by design: the ones this test started are killed here.
  const sandboxes = createLocalProvider({ rootDir: path.join(dataDir, 'sandboxes') });
  for (const s of await sandboxes.list().catch(() => [])) await sandboxes.kill(s.id).catch(() => false);
  await db?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const upgradeRequest = (host: string) =>
  'GET / HTTP/1.1\r\n' +
  `Host: ${host}\r\n` +
  'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
  `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`;

type Leaving = 'rst' | 'fin';
/** When the client leaves: as soon as the request is written, a little later, or at the first answer byte. */
type Moment = 'at once' | 'soon' | 'at the answer';

/** One client that sends an upgrade request and vanishes; resolves when its socket is closed. */
function vanish(
  port: number,
  host: string,
  leaving: Leaving,
  moment: Moment,
  delayMs: number,
): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.on('close', () => resolve());
    // SO_LINGER 0 then close (an RST), or a plain close (a FIN; the kernel answers later data with RST).
    const leave = () => (leaving === 'rst' ? socket.resetAndDestroy() : socket.destroy());
    socket.on('connect', () => {
      socket.write(upgradeRequest(host));
      if (moment === 'at once') leave();
      else if (moment === 'soon') setTimeout(leave, delayMs);
    });
    socket.on('data', leave);
    // The server may close first (a 404), or nothing may come: leave anyway.
    socket.on('end', leave);
    setTimeout(leave, 5_000);
  });
}

/**
 * A whole websocket handshake and one echoed message through the proxy: the status line, the echo,
 * and the socket, left open.
 */
function handshake(
  port: number,
  host: string,
): Promise<{ status: string; echo: string; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no websocket answer from ${host}: ${JSON.stringify(received)}`));
    }, 10_000);
    socket.setEncoding('utf8');
    socket.on('error', reject);
    socket.on('connect', () => socket.write(upgradeRequest(host)));
    socket.on('data', (chunk: string) => {
      const before = received.length;
      received += chunk;
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) return;
      if (before <= end) socket.write('ping');
      const echo = received.slice(end + 4);
      if (echo.length >= 4) {
        clearTimeout(timer);
        socket.removeAllListeners('data');
        resolve({ status: received.slice(0, received.indexOf('\r\n')), echo, socket });
      }
    });
  });
}

describe('websocket upgrades whose clients vanish mid-handshake', () => {
  it('leave the server serving, with no crash and no connection left open to the app', async () => {
    const cases: (() => Promise<void>)[] = [];
    let n = 0;
    for (let round = 0; round < 10; round++)
      for (const host of Object.values(hosts))
        for (const leaving of ['rst', 'fin'] as const)
          for (const moment of ['at once', 'soon', 'at the answer'] as const)
            cases.push(() => vanish(server.port, host, leaving, moment, n++ % 15));
    expect(cases.length).toBe(360);
    // A few at a time, as a page full of sockets would.
    const workers = Array.from({ length: 12 }, async () => {
      for (let next = cases.shift(); next; next = cases.shift()) {
        await next();
        expect(server.exited(), `the server died:\n${server.output().slice(-3000)}`).toBe(false);
      }
    });
    await Promise.all(workers);

    expect(server.exited(), `the server died:\n${server.output().slice(-3000)}`).toBe(false);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect(await getViaProxy(`http://${hosts.plainProject}/`)).toEqual({ status: 200, body: 'plain' });
    const live = await handshake(server.port, hosts.socketsProject);
    live.socket.destroy();
    expect(live).toMatchObject({ status: 'HTTP/1.1 101 Switching Protocols', echo: 'ping' });
    // Each connection the proxy opened to the app ends with its client.
    let open = '';
    for (const deadline = Date.now() + 20_000; Date.now() < deadline; ) {
      open = (await getViaProxy(`http://${hosts.socketsDeployment}/open`)).body;
      if (open === '0') break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(open, 'websockets still open between the proxy and the app').toBe('0');
    expect(server.output()).not.toMatch(/crashed/);
    expect(server.errorLines()).toEqual([]);
  }, 180_000);
});

describe('a shutdown with a websocket open through the proxy', () => {
  it('ends the websocket after SHUTDOWN_TIMEOUT_MS and exits cleanly', async () => {
    const live = await handshake(server.port, hosts.socketsDeployment);
    expect(live.status).toBe('HTTP/1.1 101 Switching Protocols');
    const closed = new Promise<void>((resolve) => live.socket.once('close', () => resolve()));
    live.socket.on('error', () => {});
    server.child.kill('SIGTERM');
    // SHUTDOWN_TIMEOUT_MS is 2 s here; much longer means it waits for the websocket to end by itself.
    const exit = await Promise.race([
      server.waitExit(),
      new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 30_000)),
    ]);
    expect(exit, server.output().slice(-2000)).toEqual({ code: 0, signal: null });
    await closed;
  }, 60_000);
});
