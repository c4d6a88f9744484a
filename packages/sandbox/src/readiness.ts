/**
 * Is a freshly started app ready? Ready means it accepts TCP connections on its port, or, with a
 * health-check path, answers GET with a 2xx/3xx status. Polls at a short interval, one probe at a time.
 */
import http from 'node:http';
import net from 'node:net';
import { SandboxError } from './types';

export interface WaitForAppOptions {
  host: string;
  port: number;
  /** GET this path (from the manifest) instead of a bare TCP connect. */
  healthcheckPath?: string;
  timeoutMs: number;
  /** Checked between probes: false means the app died, and waiting stops at once. */
  isAlive?: () => boolean | Promise<boolean>;
  /** Aborting rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Pause between probes (default 75 ms). */
  intervalMs?: number;
  /**
   * Whether the app listens, read without connecting (e.g. in its network namespace, when the port
   * here is a forwarder's from the start). Probes (a TCP connection through the port here, or the
   * health check) are made only once it says yes.
   */
  listening?: () => boolean;
  /** Pause between `listening` checks while it says no (default: intervalMs). */
  listenIntervalMs?: number;
}

/** The app did not become ready; the message is meant for the deployment's log. */
export class AppNotReadyError extends SandboxError {
  override name = 'AppNotReadyError';
}

const DEFAULT_INTERVAL_MS = 75;
/** A single probe never waits longer than this, so a hung connect cannot eat the whole budget. */
const PROBE_TIMEOUT_MS = 2_000;

export async function waitForApp(opts: WaitForAppOptions): Promise<void> {
  const { host, port, healthcheckPath, timeoutMs, isAlive, signal } = opts;
  const deadline = Date.now() + timeoutMs;
  let lastAnswer: string | undefined;
  for (;;) {
    signal?.throwIfAborted();
    const probeTimeout = Math.max(1, Math.min(PROBE_TIMEOUT_MS, deadline - Date.now()));
    const listens = opts.listening?.();
    // `listening` says no: no connection is tried (it would prove nothing, or cost an answer).
    const probe: Probe =
      listens === false
        ? { ready: false }
        : healthcheckPath
          ? await httpProbe(host, port, healthcheckPath, probeTimeout)
          : await tcpProbe(host, port, probeTimeout);
    if (probe.ready) return;
    lastAnswer = probe.answer ?? lastAnswer;
    if (isAlive && !(await isAlive())) {
      throw new AppNotReadyError(`the app exited before listening on port ${port}`);
    }
    if (Date.now() >= deadline) {
      const within = `within ${formatSeconds(timeoutMs)}`;
      if (!healthcheckPath) throw new AppNotReadyError(`the app did not listen on port ${port} ${within}`);
      const last = lastAnswer ? ` (last answer: ${lastAnswer})` : ' (it never answered)';
      throw new AppNotReadyError(
        `the app did not answer GET ${healthcheckPath} on port ${port} with a 2xx or 3xx status ${within}${last}`,
      );
    }
    const interval =
      listens === false
        ? (opts.listenIntervalMs ?? opts.intervalMs ?? DEFAULT_INTERVAL_MS)
        : (opts.intervalMs ?? DEFAULT_INTERVAL_MS);
    await sleep(Math.min(interval, Math.max(0, deadline - Date.now())), signal);
  }
}

interface Probe {
  ready: boolean;
  /** What the app answered when it was not ready (health checks), e.g. "HTTP 500". */
  answer?: string;
}

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<Probe> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ready: boolean) => {
      socket.destroy();
      resolve({ ready });
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function httpProbe(host: string, port: number, requestPath: string, timeoutMs: number): Promise<Probe> {
  return new Promise((resolve) => {
    // A fresh connection per probe (no agent): a kept-alive socket could outlive the app's restart.
    const req = http.get({ host, port, path: requestPath, agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      resolve({ ready: status >= 200 && status < 400, answer: `HTTP ${status}` });
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve({ ready: false }));
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(ms < 10_000 ? 1 : 0))} s`;
}
