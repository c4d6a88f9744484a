/**
 * A local sandbox on disk: `<rootDir>/<id>/` holding
 *   app/          the working folder (owned by the sandbox user)
 *   home/         HOME for the sandbox's code, npm's cache inside (owned by the sandbox user)
 *   logs/         commands.log, app.stdout.log, app.stderr.log (bounded; owned by the server)
 *   sandbox.json  metadata, envs and the running app's identity (owned by the server, mode 0600)
 *   passwd, group the sandbox's uid for /etc/passwd and /etc/group inside (isolated sandboxes only)
 * The sandbox user can change app/ and home/ only: it can neither forge sandbox.json (whose pid the
 * server signals) nor rewrite its logs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

export const ID_PATTERN = /^local-[0-9a-f]{12}$/;
const RECORD_FILE = 'sandbox.json';

export interface SandboxPaths {
  root: string;
  passwd: string;
  group: string;
  app: string;
  home: string;
  logs: string;
  commandsLog: string;
  appStdout: string;
  appStderr: string;
}

export function sandboxPaths(rootDir: string, id: string): SandboxPaths {
  const root = path.join(rootDir, id);
  const logs = path.join(root, 'logs');
  return {
    root,
    passwd: path.join(root, 'passwd'),
    group: path.join(root, 'group'),
    app: path.join(root, 'app'),
    home: path.join(root, 'home'),
    logs,
    commandsLog: path.join(logs, 'commands.log'),
    appStdout: path.join(logs, 'app.stdout.log'),
    appStderr: path.join(logs, 'app.stderr.log'),
  };
}

const appSchema = z.object({
  pid: z.number().int().min(2),
  port: z.number().int(),
  startTime: z.string(),
  bootId: z.string(),
  command: z.string(),
  startedAt: z.string(),
});

const pastaSchema = z.object({
  pid: z.number().int().min(2),
  startTime: z.string(),
  bootId: z.string(),
  spec: z.string(),
});

const limitsSchema = z.object({
  memoryMb: z.number(),
  pids: z.number(),
  cpus: z.number(),
  diskMb: z.number(),
  tmpMb: z.number(),
});

/** An isolated sandbox's own uid, network namespace, limits and network helpers (see isolation.ts). */
const isolationSchema = z.object({
  uid: z.number().int().min(1000),
  netns: z.string().regex(/^cr-[0-9a-f]{12}$/),
  limits: limitsSchema,
  /** While it builds: the build's memory and CPUs, in force instead of `limits`' until endBuild. */
  build: z.object({ memoryMb: z.number(), cpus: z.number() }).nullish(),
  outbound: pastaSchema.nullable(),
  inbound: pastaSchema.nullable(),
});

const recordSchema = z.object({
  version: z.literal(1),
  id: z.string(),
  createdAt: z.string(),
  metadata: z.record(z.string(), z.string()),
  envs: z.record(z.string(), z.string()),
  app: appSchema.nullable(),
  isolation: isolationSchema.optional(),
  /** A Node.js folder of this machine put first on PATH (see CreateSandboxOptions.node). */
  node: z.string().optional(),
});

export type SandboxRecord = z.infer<typeof recordSchema>;
export type AppRecord = z.infer<typeof appSchema>;
export type IsolationRecord = z.infer<typeof isolationSchema>;

/** The sandbox's record, or null when the sandbox is gone (or its record unreadable). */
export function readRecord(root: string): SandboxRecord | null {
  try {
    const parsed = recordSchema.safeParse(JSON.parse(fs.readFileSync(path.join(root, RECORD_FILE), 'utf8')));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** Atomic (temp file + rename), so a reader never sees half a record. */
export function writeRecord(root: string, record: SandboxRecord): void {
  const file = path.join(root, RECORD_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/**
 * Read-modify-write of the record. Synchronous on purpose: two updates in this process cannot
 * interleave. No-op when the sandbox is gone.
 */
export function updateRecord(root: string, change: (record: SandboxRecord) => SandboxRecord): void {
  const record = readRecord(root);
  if (!record) return;
  try {
    writeRecord(root, change(record));
  } catch (err) {
    // Removed by another process between the read and the write: gone is gone.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Remove a sandbox's folder: renamed first (one atomic step: list() and connect() stop seeing it),
 * then deleted. Quietly done when it is already gone.
 */
export async function removeSandboxFolder(root: string): Promise<void> {
  const trash = path.join(path.dirname(root), `.trash-${path.basename(root)}-${process.pid}-${Date.now()}`);
  try {
    await fs.promises.rename(root, trash);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  await fs.promises.rm(trash, { recursive: true, force: true });
}
