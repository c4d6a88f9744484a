/** HTTP helpers: a precise single-client latency sampler, tRPC URLs, and account setup through the API. */
import http from 'node:http';
import { type CodeRunnerClient, createClient } from '@coderunner/api/client';
import pg from 'pg';

/** `/trpc/<path>?input=<superjson>` for a query, as httpLink sends it. */
export function trpcQueryPath(procedure: string, input?: unknown): string {
  const base = `/trpc/${procedure}`;
  return input === undefined ? base : `${base}?input=${encodeURIComponent(JSON.stringify({ json: input }))}`;
}

/** `/trpc/a,a,...?batch=1&input={"0":{json},...}`, as httpBatchLink sends a batch of queries. */
export function trpcBatchPath(procedure: string, count: number, input: unknown): string {
  const inputs: Record<string, unknown> = {};
  for (let i = 0; i < count; i++) inputs[i] = { json: input };
  return `/trpc/${Array(count).fill(procedure).join(',')}?batch=1&input=${encodeURIComponent(JSON.stringify(inputs))}`;
}

export interface LatencySample {
  latencies: number[];
  errors: number;
  durationMs: number;
}

/**
 * One client, one request at a time over a kept-alive connection (a closed loop): the latency of each
 * GET, in ms (hrtime). Bounded by `durationMs` and `maxRequests`; `warmup` requests are not recorded.
 */
export async function sampleLatency(
  url: string,
  headers: Record<string, string>,
  opts: { durationMs: number; maxRequests: number; warmup?: number },
): Promise<LatencySample> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const target = new URL(url);
  const once = () =>
    new Promise<number>((resolve, reject) => {
      const start = process.hrtime.bigint();
      const req = http.get(
        { host: target.hostname, port: target.port, path: target.pathname + target.search, headers, agent },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            if (res.statusCode !== 200 && body.length < 1000) body += chunk;
          });
          res.on('end', () => {
            const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
            if (res.statusCode === 200) resolve(elapsed);
            else reject(new Error(`HTTP ${res.statusCode}: ${body.slice(0, 300)}`));
          });
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
      req.on('error', reject);
    });
  try {
    for (let i = 0; i < (opts.warmup ?? 0); i++) await once().catch(() => 0);
    const latencies: number[] = [];
    let errors = 0;
    let firstError = '';
    const started = Date.now();
    const deadline = started + opts.durationMs;
    while (Date.now() < deadline && latencies.length + errors < opts.maxRequests) {
      try {
        latencies.push(await once());
      } catch (err) {
        errors++;
        firstError ||= (err as Error).message;
        if (errors > 100) throw new Error(`too many failed requests to ${url} (first: ${firstError})`);
      }
    }
    return { latencies, errors, durationMs: Date.now() - started };
  } finally {
    agent.destroy();
  }
}

export const client = (baseUrl: string, token?: string): CodeRunnerClient =>
  createClient({ url: `${baseUrl}/trpc`, token });

/** Registers through the API (a real argon2 hash); returns the token and the user's id. */
export async function register(baseUrl: string, email: string, password: string) {
  const { token, user } = await client(baseUrl).auth.register.mutate({ email, password });
  return { token, userId: user.id };
}

/** A short-lived pg client for setup and EXPLAIN. */
export async function withPg<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}
