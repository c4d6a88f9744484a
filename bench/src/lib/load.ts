/** Throughput with autocannon (in this process), keeping every response's latency (float ms). */
import autocannon from 'autocannon';
import { percentile } from './stats';

export interface LoadResult {
  /** Successful (2xx) responses per second. */
  rps: number;
  ok: number;
  failed: number;
  durationS: number;
  p50: number;
  p99: number;
  latencies: number[];
}

export async function runLoad(opts: {
  url: string;
  headers?: Record<string, string>;
  method?: 'GET' | 'POST';
  body?: string;
  connections: number;
  durationS: number;
}): Promise<LoadResult> {
  const latencies: number[] = [];
  // Without a callback the instance is also a promise of the result.
  const instance = autocannon({
    url: opts.url,
    method: opts.method ?? 'GET',
    headers: opts.headers,
    body: opts.body,
    connections: opts.connections,
    duration: opts.durationS,
    timeout: 10,
  }) as unknown as autocannon.Instance & Promise<autocannon.Result>;
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
  });
  const result = await instance;
  const ok = result['2xx'];
  const failed = result.non2xx + result.errors + result.timeouts;
  return {
    rps: ok / result.duration,
    ok,
    failed,
    durationS: result.duration,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    latencies,
  };
}
