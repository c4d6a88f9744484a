/**
 * The argon2 benchmark's background load, in its own process so it does not share the latency
 * sampler's event loop: LOGIN_CONNECTIONS clients, each on its own kept-alive connection, calling
 * auth.login back to back while told to run. Driven over the IPC channel:
 *   parent → { cmd: 'run' | 'pause' | 'exit' }
 *   child  → { event: 'ready' } | { event: 'running' } | { event: 'paused', ok, failed, latencies }
 * A pause lets the calls in flight finish. The process exits on 'exit', when its parent goes, or after
 * LOGIN_MAX_S seconds whatever happens.
 */
import http from 'node:http';

const target = new URL(`${process.env.TARGET_URL}/trpc/auth.login`);
const body = JSON.stringify({
  json: { email: process.env.LOGIN_EMAIL, password: process.env.LOGIN_PASSWORD },
});
const connections = Number(process.env.LOGIN_CONNECTIONS ?? 20);
setTimeout(() => process.exit(3), Number(process.env.LOGIN_MAX_S ?? 120) * 1000).unref();
process.on('disconnect', () => process.exit(0));

let running = false;
let ok = 0;
let failed = 0;
let latencies: number[] = [];
let loops: Promise<void>[] = [];

function login(agent: http.Agent): Promise<void> {
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    const req = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.on('data', () => {});
        res.on('end', () => {
          if (res.statusCode === 200) {
            ok++;
            latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
          } else failed++;
          resolve();
        });
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.on('error', () => {
      failed++;
      resolve();
    });
    req.end(body);
  });
}

async function loop(agent: http.Agent): Promise<void> {
  while (running) await login(agent);
}

const agents = Array.from({ length: connections }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));

process.on('message', async (msg: { cmd: string }) => {
  if (msg.cmd === 'run' && !running) {
    running = true;
    ok = 0;
    failed = 0;
    latencies = [];
    loops = agents.map((a) => loop(a));
    process.send?.({ event: 'running' });
  } else if (msg.cmd === 'pause') {
    running = false;
    await Promise.all(loops);
    process.send?.({ event: 'paused', ok, failed, latencies });
  } else if (msg.cmd === 'exit') {
    running = false;
    for (const a of agents) a.destroy();
    process.exit(0);
  }
});
process.send?.({ event: 'ready' });
