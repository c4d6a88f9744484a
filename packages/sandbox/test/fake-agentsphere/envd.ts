/**
 * The fake envd: files over multipart HTTP, processes and directories over Connect RPC with JSON bodies
 * (unary: `application/json`; server streams: `application/connect+json`, each message framed by a flag
 * byte and a 4-byte big-endian length, ending with a flag-0x02 frame). Commands run for real with
 * `/bin/bash -l -c`, in their own process group, inside the sandbox's folder.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename, dirname, join, posix } from 'node:path';
import { type FakeSandbox, sendJson } from './server';

interface ProcessConfig {
  cmd: string;
  args?: string[];
  envs?: Record<string, string>;
  cwd?: string;
}

export interface FakeProcess {
  pid: number;
  child: ChildProcess;
  config: ProcessConfig;
  /** Open Start/Connect streams of this process. */
  streams: Set<ServerResponse>;
}

const STREAM_END = 0x02;
/** Go's wording for a process ended by a signal, which the SDK shows as-is. */
const SIGNAL_WORDS: Record<string, string> = {
  SIGKILL: 'killed',
  SIGTERM: 'terminated',
  SIGINT: 'interrupt',
};

export async function handleEnvd(
  sandbox: FakeSandbox,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  raw: Buffer,
): Promise<void> {
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case 'GET /health':
      return sendJson(res, 204);
    case 'POST /files':
      return sendJson(res, 200, await uploadFiles(sandbox, req, url, raw));
    case 'GET /files': {
      const path = hostPath(sandbox, url.searchParams.get('path') ?? '');
      if (!existsSync(path)) return sendJson(res, 404, { code: 404, message: 'file not found' });
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(await readFile(path));
      return;
    }
    case 'POST /process.Process/Start':
      return startProcess(sandbox, req, res, decodeEnvelope(raw) as { process: ProcessConfig });
    case 'POST /process.Process/Connect': {
      const pid = (decodeEnvelope(raw) as { process: { pid: number } }).process.pid;
      const proc = sandbox.processes.get(pid);
      openStream(res);
      if (!proc) return endStream(res, { code: 'not_found', message: `process with pid ${pid} not found` });
      return attach(proc, res);
    }
  }
  const body = raw.length > 0 ? JSON.parse(raw.toString()) : {};
  switch (route) {
    case 'POST /process.Process/List':
      return sendJson(res, 200, {
        processes: [...sandbox.processes.values()].map((p) => ({ pid: p.pid, config: p.config })),
      });
    case 'POST /process.Process/SendSignal': {
      const proc = sandbox.processes.get(body.process?.pid);
      if (!proc) {
        return sendJson(res, 404, { code: 'not_found', message: `process ${body.process?.pid} not found` });
      }
      // Like the real envd: the pid only, not its group (children it started go on running).
      try {
        process.kill(proc.pid, body.signal === 'SIGNAL_SIGTERM' ? 'SIGTERM' : 'SIGKILL');
      } catch {
        // Already gone.
      }
      return sendJson(res, 200, {});
    }
    case 'POST /filesystem.Filesystem/MakeDir': {
      const path = hostPath(sandbox, body.path);
      if (existsSync(path)) {
        return sendJson(res, 409, { code: 'already_exists', message: `${body.path} exists` });
      }
      await mkdir(path, { recursive: true });
      return sendJson(res, 200, {
        entry: { name: basename(body.path), type: 'FILE_TYPE_DIRECTORY', path: body.path },
      });
    }
  }
  sendJson(res, 404, { code: 'unimplemented', message: `the fake envd has no ${route}` });
}

/** Several files: one multipart part each, named by its path (or `?path=` for a single file). */
async function uploadFiles(sandbox: FakeSandbox, req: IncomingMessage, url: URL, raw: Buffer) {
  const headers = { 'content-type': req.headers['content-type'] ?? '' };
  const form = await new Response(raw, { headers }).formData();
  const files = form.getAll('file');
  const single = files.length === 1 ? url.searchParams.get('path') : null;
  const written = [];
  for (const file of files) {
    if (typeof file === 'string') continue;
    const path = posix.resolve('/home/user', single ?? file.name);
    await mkdir(dirname(hostPath(sandbox, path)), { recursive: true });
    await writeFile(hostPath(sandbox, path), Buffer.from(await file.arrayBuffer()));
    written.push({ name: basename(path), type: 'file', path });
  }
  return written;
}

function startProcess(
  sandbox: FakeSandbox,
  req: IncomingMessage,
  res: ServerResponse,
  body: { process: ProcessConfig },
) {
  const config = body.process;
  openStream(res);
  const cwd = hostPath(sandbox, config.cwd ?? '/home/user');
  if (!existsSync(cwd)) {
    return endStream(res, { code: 'invalid_argument', message: `cwd '${config.cwd}' does not exist` });
  }
  const child = spawn(config.cmd, config.args ?? [], {
    cwd,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      HOME: join(sandbox.root, 'home/user'),
      USER: 'user',
      ...sandbox.envVars,
      ...config.envs,
    },
  });
  if (child.pid === undefined) {
    child.once('error', (err) => endStream(res, { code: 'internal', message: err.message }));
    return;
  }
  const proc: FakeProcess = { pid: child.pid, child, config, streams: new Set() };
  sandbox.processes.set(proc.pid, proc);
  attach(proc, res);

  // Like envd, end the command when the caller's deadline (Connect's timeout header) passes.
  const deadline = Number(req.headers['connect-timeout-ms']);
  const timer = deadline > 0 ? setTimeout(() => killProcess(proc, 'SIGKILL'), deadline) : undefined;
  const broadcast = (message: unknown) => {
    for (const stream of proc.streams) stream.write(frame(0, message));
  };
  child.stdout?.on('data', (chunk: Buffer) =>
    broadcast({ event: { data: { stdout: chunk.toString('base64') } } }),
  );
  child.stderr?.on('data', (chunk: Buffer) =>
    broadcast({ event: { data: { stderr: chunk.toString('base64') } } }),
  );
  child.on('close', (code, signal) => {
    clearTimeout(timer);
    sandbox.processes.delete(proc.pid);
    const status = signal ? `signal: ${SIGNAL_WORDS[signal] ?? signal.toLowerCase()}` : `exit status ${code}`;
    const end = {
      exitCode: code ?? -1,
      exited: code !== null,
      status,
      error: code === 0 ? undefined : status,
    };
    broadcast({ event: { end } });
    for (const stream of proc.streams) endStream(stream);
  });
}

function attach(proc: FakeProcess, res: ServerResponse): void {
  proc.streams.add(res);
  res.on('close', () => proc.streams.delete(res));
  res.write(frame(0, { event: { start: { pid: proc.pid } } }));
}

export function killProcess(proc: FakeProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-proc.pid, signal); // the whole group: bash and everything it started
  } catch {
    // Already gone.
  }
}

function openStream(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/connect+json' });
}

function endStream(res: ServerResponse, error?: { code: string; message: string }): void {
  res.end(frame(STREAM_END, error ? { error } : {}));
}

function frame(flags: number, message: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(message));
  const header = Buffer.alloc(5);
  header.writeUInt8(flags, 0);
  header.writeUInt32BE(json.length, 1);
  return Buffer.concat([header, json]);
}

/** The single message of a Connect streaming request. */
export function decodeEnvelope(raw: Buffer): unknown {
  const length = raw.readUInt32BE(1);
  return JSON.parse(raw.subarray(5, 5 + length).toString());
}

/** A sandbox path (absolute, or relative to /home/user) as a path on this machine. */
function hostPath(sandbox: FakeSandbox, path: string): string {
  return join(sandbox.root, posix.resolve('/home/user', path));
}
