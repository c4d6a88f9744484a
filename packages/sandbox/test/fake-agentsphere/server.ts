/**
 * A local fake of AgentSphere for tests that drive the unmodified SDK: one node:http server for the REST
 * API and one for envd (the daemon inside each sandbox, see envd.ts). Sandboxes are temp folders; their
 * commands run for real. The fake records every call, can fail or hang the next calls on demand, and
 * expires sandboxes whose timeout passed. Requests reach it through installFetchRouter (fetch-router.ts).
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { decodeEnvelope, type FakeProcess, handleEnvd, killProcess } from './envd';

export interface FakeTemplate {
  /** Files written into each new sandbox, relative to its root; `bin/` is on PATH, its files executable. */
  files?: Record<string, string>;
}

export interface FakeOptions {
  apiKey: string;
  domain: string;
  templates?: Record<string, FakeTemplate>;
  /** The plan's maximum lifetime: a sandbox ends then, and keep-alives past it are refused (400). */
  maxLifetimeMs?: number;
  /** Concurrent sandboxes allowed; a create beyond answers 429 (E2B's answer to that quota). */
  maxSandboxes?: number;
}

export interface FakeSandbox {
  id: string;
  templateID: string;
  metadata: Record<string, string>;
  envVars: Record<string, string>;
  startedAt: Date;
  endAt: Date;
  /** The sandbox's `/` on this machine; `/home/user` is `<root>/home/user`. */
  root: string;
  timer?: NodeJS.Timeout;
  processes: Map<number, FakeProcess>;
  /** Asked for with `secure: true`: envd then refuses requests without it (X-Access-Token). */
  accessToken?: string;
}

export interface RecordedCall {
  target: 'api' | 'envd';
  method: string;
  path: string;
  sandboxId?: string;
  body?: unknown;
}

export interface FailureRule {
  target?: 'api' | 'envd';
  method?: string;
  path?: RegExp;
  /** HTTP status to answer with (default 500) unless `hang`. */
  status?: number;
  /** Accept the request and never answer. */
  hang?: boolean;
  /** How many matching calls fail (default 1). */
  count?: number;
  /** The message of the answer (default "injected failure"). */
  message?: string;
  /** Do what was asked first, then fail or hang the answer (a create that "timed out" but happened). */
  afterHandling?: boolean;
}

export const ENVD_PORT = 49983;

export class FakeAgentSphere {
  readonly calls: RecordedCall[] = [];
  readonly sandboxes = new Map<string, FakeSandbox>();
  /** envd requests refused for want of the sandbox's access token. */
  refusedEnvdCalls = 0;
  private failures: FailureRule[] = [];
  private readonly api = createServer((req, res) => void this.dispatch('api', req, res));
  private readonly envd = createServer((req, res) => void this.dispatch('envd', req, res));

  private constructor(readonly options: FakeOptions) {}

  static async start(options: FakeOptions): Promise<FakeAgentSphere> {
    const fake = new FakeAgentSphere(options);
    await Promise.all(
      [fake.api, fake.envd].map((s) => new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok))),
    );
    return fake;
  }

  get apiUrl(): string {
    return `http://127.0.0.1:${(this.api.address() as AddressInfo).port}`;
  }

  get envdUrl(): string {
    return `http://127.0.0.1:${(this.envd.address() as AddressInfo).port}`;
  }

  failNext(rule: FailureRule): void {
    this.failures.push({ count: 1, status: 500, target: 'api', ...rule });
  }

  callsTo(method: string, path: RegExp, target: 'api' | 'envd' = 'api'): RecordedCall[] {
    return this.calls.filter((c) => c.target === target && c.method === method && path.test(c.path));
  }

  /** Where `https://<host>/…` really goes: the API, a sandbox's envd, or an app's port on 127.0.0.1. */
  route(url: URL): { url: string; headers: Record<string, string> } | undefined {
    const path = url.pathname + url.search;
    if (url.hostname === `api.${this.options.domain}`) return { url: this.apiUrl + path, headers: {} };
    const suffix = `.${this.options.domain}`;
    const match = /^(\d+)-(.+)$/.exec(
      url.hostname.endsWith(suffix) ? url.hostname.slice(0, -suffix.length) : '',
    );
    if (!match) return undefined;
    const [, port, sandboxId = ''] = match;
    if (Number(port) === ENVD_PORT) {
      return { url: this.envdUrl + path, headers: { 'x-fake-sandbox-id': sandboxId } };
    }
    return { url: `http://127.0.0.1:${port}${path}`, headers: {} };
  }

  /**
   * Breaks every open Start/Connect stream of the sandbox's processes (their sockets are destroyed, as
   * when the service's edge restarts); the processes go on running. Returns how many streams broke.
   */
  breakStreams(id: string): number {
    let broken = 0;
    for (const proc of this.sandboxes.get(id)?.processes.values() ?? []) {
      for (const stream of proc.streams) {
        stream.destroy();
        broken++;
      }
      proc.streams.clear();
    }
    return broken;
  }

  /** End a sandbox now, as if its timeout had passed. */
  async expire(id: string): Promise<void> {
    const sandbox = this.sandboxes.get(id);
    if (!sandbox) return;
    this.sandboxes.delete(id);
    clearTimeout(sandbox.timer);
    for (const proc of sandbox.processes.values()) killProcess(proc, 'SIGKILL');
    await rm(sandbox.root, { recursive: true, force: true, maxRetries: 3 });
  }

  async stop(): Promise<void> {
    await Promise.all([...this.sandboxes.keys()].map((id) => this.expire(id)));
    for (const server of [this.api, this.envd]) {
      server.closeAllConnections();
      await new Promise((done) => server.close(done));
    }
  }

  private async dispatch(target: 'api' | 'envd', req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      await this.answer(target, req, res);
    } catch (err) {
      // Also a client that went away mid-request: nothing left to answer then.
      if (res.headersSent || res.destroyed) res.destroy();
      else sendJson(res, 500, { code: 500, message: String(err) });
    }
  }

  private async answer(target: 'api' | 'envd', req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    const raw = await readBody(req);
    const sandboxId = target === 'envd' ? String(req.headers['x-fake-sandbox-id'] ?? '') : undefined;
    this.calls.push({ target, method, path: url.pathname, sandboxId, body: parseBody(req, raw) });

    const failure = this.failures.find(
      (f) =>
        f.target === target && (!f.method || f.method === method) && (!f.path || f.path.test(url.pathname)),
    );
    if (failure) {
      failure.count = (failure.count ?? 1) - 1;
      if (failure.count <= 0) this.failures = this.failures.filter((f) => f !== failure);
      if (failure.afterHandling && target === 'api') {
        // Done for real; its answer is lost.
        await this.handleApi(req, new ServerResponse(req), url, raw);
      }
      if (failure.hang) return;
      return sendJson(res, failure.status ?? 500, {
        code: failure.status,
        message: failure.message ?? 'injected failure',
      });
    }
    if (target === 'api') return this.handleApi(req, res, url, raw);
    const sandbox = this.sandboxes.get(sandboxId ?? '');
    // What AgentSphere's edge answers for a sandbox that is gone.
    if (!sandbox) return sendJson(res, 502, { code: 502, message: 'The sandbox was not found', sandboxId });
    // A secured envd (created with `secure: true`) answers only requests with its access token.
    if (sandbox.accessToken && req.headers['x-access-token'] !== sandbox.accessToken) {
      this.refusedEnvdCalls++;
      return sendJson(res, 401, { code: 'unauthenticated', message: 'missing or invalid access token' });
    }
    await handleEnvd(sandbox, req, res, url, raw);
  }

  private async handleApi(req: IncomingMessage, res: ServerResponse, url: URL, raw: Buffer): Promise<void> {
    if (req.headers['x-api-key'] !== this.options.apiKey) {
      return sendJson(res, 401, { code: 401, message: 'Invalid API key' });
    }
    const [collection, id, action] = url.pathname.split('/').filter(Boolean);
    const body = raw.length > 0 ? JSON.parse(raw.toString()) : {};
    if (collection !== 'sandboxes') return sendJson(res, 404, { code: 404, message: 'no such route' });
    if (!id && req.method === 'POST') {
      const max = this.options.maxSandboxes;
      if (max !== undefined && this.sandboxes.size >= max) {
        return sendJson(res, 429, {
          code: 429,
          message: `You have reached the maximum number of concurrent sandboxes (${max})`,
        });
      }
      return sendJson(res, 201, await this.create(body));
    }
    if (!id && req.method === 'GET') return sendJson(res, 200, this.list(url.searchParams.get('metadata')));

    const sandbox = this.sandboxes.get(id ?? '');
    if (!sandbox) {
      return sendJson(res, 404, {
        code: 404,
        message: `sandbox "${id}" doesn't exist or you don't have access to it`,
      });
    }
    if (!action && req.method === 'GET') return sendJson(res, 200, describe(sandbox));
    if (!action && req.method === 'DELETE') {
      await this.expire(sandbox.id);
      return sendJson(res, 204);
    }
    if (action === 'timeout' && req.method === 'POST') {
      const max = this.options.maxLifetimeMs;
      const ms = Number(body.timeout) * 1000;
      if (max !== undefined && Date.now() + ms > sandbox.startedAt.getTime() + max) {
        return sendJson(res, 400, {
          code: 400,
          message: `sandbox ${sandbox.id} cannot be kept alive past its maximum lifetime (${max / 1000} s)`,
        });
      }
      this.schedule(sandbox, ms);
      return sendJson(res, 204);
    }
    sendJson(res, 404, { code: 404, message: 'no such route' });
  }

  private async create(body: {
    templateID: string;
    timeout: number;
    metadata?: Record<string, string>;
    envVars?: Record<string, string>;
    secure?: boolean;
  }) {
    const [sandboxID, clientID] = [`i${randomBytes(6).toString('hex')}`, randomBytes(4).toString('hex')];
    const root = await mkdtemp(join(tmpdir(), 'fake-agentsphere-'));
    await mkdir(join(root, 'home/user'), { recursive: true });
    await mkdir(join(root, 'bin'));
    // A login shell resets PATH in /etc/profile; the profile puts the template's bin/ back in front.
    await writeFile(join(root, 'home/user/.bash_profile'), `export PATH="${root}/bin:$PATH"\n`);
    for (const [path, content] of Object.entries(this.options.templates?.[body.templateID]?.files ?? {})) {
      await mkdir(dirname(join(root, path)), { recursive: true });
      await writeFile(join(root, path), content);
      if (path.startsWith('bin/')) await chmod(join(root, path), 0o755);
    }
    const now = new Date();
    const sandbox: FakeSandbox = {
      id: `${sandboxID}-${clientID}`,
      templateID: body.templateID,
      metadata: body.metadata ?? {},
      envVars: body.envVars ?? {},
      startedAt: now,
      endAt: now,
      root,
      processes: new Map(),
      accessToken: body.secure ? randomBytes(16).toString('hex') : undefined,
    };
    this.sandboxes.set(sandbox.id, sandbox);
    this.schedule(sandbox, body.timeout * 1000);
    return {
      sandboxID,
      clientID,
      templateID: body.templateID,
      envdVersion: '0.1.5',
      envdAccessToken: sandbox.accessToken,
    };
  }

  /** `metadata` is what the SDK sends: URL-encoded `key=value` pairs, each key and value encoded again. */
  private list(metadata: string | null) {
    const wanted = [...new URLSearchParams(metadata ?? '')].map(([k, v]) => [
      decodeURIComponent(k),
      decodeURIComponent(v),
    ]);
    return [...this.sandboxes.values()]
      .filter((s) => wanted.every(([k = '', v]) => s.metadata[k] === v))
      .map(describe);
  }

  private schedule(sandbox: FakeSandbox, ms: number): void {
    clearTimeout(sandbox.timer);
    const max = this.options.maxLifetimeMs;
    const end = Math.min(Date.now() + ms, max === undefined ? Infinity : sandbox.startedAt.getTime() + max);
    sandbox.endAt = new Date(end);
    sandbox.timer = setTimeout(() => void this.expire(sandbox.id), end - Date.now());
    sandbox.timer.unref();
  }
}

function describe(s: FakeSandbox) {
  const [sandboxID, clientID] = [s.id.slice(0, s.id.lastIndexOf('-')), s.id.slice(s.id.lastIndexOf('-') + 1)];
  return {
    sandboxID,
    clientID,
    templateID: s.templateID,
    metadata: s.metadata,
    startedAt: s.startedAt.toISOString(),
    endAt: s.endAt.toISOString(),
    envdVersion: '0.1.5',
    envdAccessToken: s.accessToken,
    cpuCount: 2,
    memoryMB: 512,
    state: 'running',
  };
}

function parseBody(req: IncomingMessage, raw: Buffer): unknown {
  const type = req.headers['content-type'] ?? '';
  try {
    if (type.startsWith('application/connect+json')) return decodeEnvelope(raw);
    if (type.startsWith('application/json') && raw.length > 0) return JSON.parse(raw.toString());
  } catch {
    // Recorded as absent; the handler reports the malformed body.
  }
  return undefined;
}

export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export function sendJson(res: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
