/**
 * The network of an isolated sandbox: a network namespace of its own (`ip netns add cr-<id>`, so it
 * outlives a server restart with the app in it) wired by one pasta instance (Debian `passt`), which
 * does both directions:
 *  - outbound: a NATed link to the internet (npm installs); `--no-map-gw` keeps the host itself out
 *    of reach, and `-T <port>` forwards the namespace's 127.0.0.1:<port> to the host's, for the app's
 *    own database port only (nothing else on the host's loopback: not the control plane, not 5432,
 *    not other apps);
 *  - inbound, while an app runs: `-t` forwards the host's APPS_ADDRESS:<port> (127.77.0.1, not
 *    127.0.0.1) to the app's port inside (spliced loopback to loopback, so an app listening on
 *    127.0.0.1 works). Never on the dashboard's address: browsers do not separate cookies by port,
 *    so an app at localhost:<port> would get the dashboard's session cookie. The host port is bound
 *    from the app's start, before the app listens: readiness is read from the namespace's own socket
 *    table (listensInside), not from a connection to the host port.
 * IPv4 only (`-4`) and no ICMP: pasta's buffers are allocated and written at start, per protocol
 * and family (PSS measured here: 29 MB with IPv4 and IPv6, 19.7 MB IPv4 only, 17.6 MB without ICMP
 * too); the registry and the app's database are reached over IPv4.
 * pasta attaches in ~20 ms (more on a loaded machine): it is started as soon as the app's port and
 * environment are known (prepareApp), and a command waits for it inside bubblewrap (isolatedCommand's
 * gate) rather than the server waiting before spawning it. slirp4netns is much lighter (1.2 MB PSS)
 * but forwards neither one host loopback port (all or none) nor to the namespace's loopback, so
 * relays forking a process per connection would be needed, and it reaches services bound to the
 * host's own address; measurements in bench/isolation-profile.md.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { SandboxError } from '../types';
import { identify, isRunning, type ProcessIdentity } from './processes';

const exec = promisify(execFile);
/**
 * ip and pasta run as root, pasta for as long as the sandbox (handling its traffic): with a fixed
 * environment, not the server's (which holds its secrets: DATABASE_URL, the keys).
 */
const run = (file: string, args: string[]) =>
  exec(file, args, { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });

/**
 * The host address isolated apps are published on: a loopback address of its own (Linux routes all
 * of 127.0.0.0/8 to `lo`, no setup needed), never the dashboard's host name or address, so that no
 * cookie of the dashboard's site (`localhost`, 127.0.0.1) is ever shared with an app's page. The
 * server refuses to serve the dashboard and API on it (a server bound to 0.0.0.0 is reachable there).
 */
export const APPS_ADDRESS = '127.77.0.1';

/** Is `address` (a socket's local address, maybe IPv4-mapped) the apps' address? */
export function isAppsAddress(address: string | undefined): boolean {
  return address === APPS_ADDRESS || address === `::ffff:${APPS_ADDRESS}`;
}

export interface NetworkTools {
  ip: string;
  pasta: string;
}

export interface PastaProcess extends ProcessIdentity {
  /** What it forwards, e.g. "out:54330" or "in:41234". */
  spec: string;
}

export function netnsPath(name: string): string {
  return `/run/netns/${name}`;
}

export async function createNetns(tools: NetworkTools, name: string): Promise<void> {
  await run(tools.ip, ['netns', 'add', name]);
}

export async function deleteNetns(tools: NetworkTools, name: string): Promise<void> {
  if (!fs.existsSync(netnsPath(name))) return;
  await run(tools.ip, ['netns', 'delete', name]).catch(() => {});
}

/** The inbound part of a helper's spec: the host address and port it publishes, e.g. "in:127.77.0.1/41234". */
export function inboundSpec(port: number): string {
  return `in:${APPS_ADDRESS}/${port}`;
}

/**
 * What a sandbox's pasta forwards, e.g. "out:54330 in:127.77.0.1/41234" (`in` only while an app
 * runs). A helper recorded by an earlier version says "in:41234" (published on 127.0.0.1): its spec
 * differs, so it is replaced.
 */
export function networkSpec(outbound: number[], inbound: number | undefined): string {
  return `out:${outbound.join(',')}${inbound === undefined ? '' : ` ${inboundSpec(inbound)}`}`;
}

/** The app port a helper's spec forwards (either format), or undefined. */
export function inboundPortOf(spec: string): number | undefined {
  const port = /\bin:(?:[\d.]+\/)?(\d+)$/.exec(spec)?.[1];
  return port === undefined ? undefined : Number(port);
}

/**
 * Start pasta on the namespace: `outbound` ports of the host's loopback reachable from inside (at the
 * same address), and `inbound` forwarding host APPS_ADDRESS:<port> to the same port inside.
 */
export async function startPasta(
  tools: NetworkTools,
  netns: string,
  pidDir: string,
  opts: { outbound: number[]; inbound?: number | undefined },
): Promise<PastaProcess> {
  const spec = networkSpec(opts.outbound, opts.inbound);
  const pidFile = path.join(pidDir, 'pasta.pid');
  await fs.promises.rm(pidFile, { force: true });
  try {
    await run(tools.pasta, [
      '--quiet',
      '--config-net',
      '--no-map-gw',
      '-4',
      // Sandboxes cannot send ICMP anyway (no raw sockets, ping_group_range closed): 2 MB less.
      '--no-icmp',
      '-t',
      opts.inbound === undefined ? 'none' : `${APPS_ADDRESS}/${opts.inbound}:${opts.inbound}`,
      '-T',
      opts.outbound.length > 0 ? opts.outbound.join(',') : 'none',
      '-u',
      'none',
      '-U',
      'none',
      // As root, pasta would switch to "nobody", which may not enter a root-owned namespace; it still
      // confines itself (own namespaces, no capabilities beyond what it needs, seccomp).
      '--runas',
      '0',
      '--pid',
      pidFile,
      '--netns',
      netnsPath(netns),
    ]);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new SandboxError(
      `could not start the sandbox's network (pasta): ${(e.stderr || e.message).trim()}`,
    );
  }
  const pid = Number((await fs.promises.readFile(pidFile, 'utf8')).trim());
  const identity = identify(pid);
  if (!identity) throw new SandboxError("the sandbox's network (pasta) exited at once");
  return { ...identity, spec };
}

export async function stopPasta(pasta: PastaProcess | null | undefined): Promise<void> {
  if (!pasta || !isRunning(pasta)) return;
  try {
    process.kill(pasta.pid, 'SIGKILL');
  } catch {
    return;
  }
  // Its listening sockets (the app's host port) are closed once it is gone.
  for (let i = 0; i < 500 && isRunning(pasta); i++) await new Promise((r) => setTimeout(r, 2));
}

/** Is process `pid` in network namespace `netns` (a process that has not entered it yet is not)? */
function inNamespace(pid: number, netns: string): boolean {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/net`) === `net:[${fs.statSync(netnsPath(netns)).ino}]`;
  } catch {
    return false;
  }
}

/**
 * Is something listening on TCP `port` in network namespace `netns` (on 127.0.0.1, 0.0.0.0 or ::),
 * seen through process `pid` (a process of the sandbox)? Read from /proc/<pid>/net/tcp{,6}, which
 * show that process's namespace, only once that process is in the sandbox's namespace (a process
 * that has not entered it yet would show the host's, where pasta holds the same port).
 * Costly: the kernel walks its whole connection table for each read (here 262,144 buckets, ~6 ms
 * per file); poll with listenWatch, not in a tight loop.
 */
export function listensInside(pid: number, port: number, netns: string): boolean {
  if (!inNamespace(pid, netns)) return false;
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[3] !== '0A') continue; // LISTEN
      const [address, localPort] = (fields[1] ?? '').split(':');
      if (localPort !== hexPort) continue;
      if (
        address === '0100007F' ||
        /^0+$/.test(address ?? '') ||
        address === '0000000000000000FFFF00000100007F' ||
        address === '00000000000000000000000001000000'
      )
        return true;
    }
  }
  return false;
}

/** The TCP ports something listens on in namespace `netns`, seen through process `pid` (as listensInside). */
export function portsListeningInside(pid: number, netns: string): number[] {
  if (!inNamespace(pid, netns)) return [];
  const ports = new Set<number>();
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[3] !== '0A') continue; // LISTEN
      const port = Number.parseInt((fields[1] ?? '').split(':')[1] ?? '', 16);
      if (port > 0) ports.add(port);
    }
  }
  return [...ports].sort((a, b) => a - b);
}

/** TCP sockets in use in the namespace of `pid` (IPv4 and IPv6 counters; a listen adds one). */
function tcpInUse(pid: number): string | null {
  try {
    const v4 = /^TCP: inuse (\d+)/m.exec(fs.readFileSync(`/proc/${pid}/net/sockstat`, 'utf8'))?.[1];
    const v6 = /^TCP6: inuse (\d+)/m.exec(fs.readFileSync(`/proc/${pid}/net/sockstat6`, 'utf8'))?.[1];
    return `${v4}/${v6}`;
  } catch {
    return null;
  }
}

/**
 * A cheap "does it listen yet?" for polling every few ms: the namespace's TCP socket counters
 * (microseconds to read) are watched, and the socket table (listensInside) is read only when they
 * changed, or every `fallbackMs` (a socket closed as the app began to listen leaves them equal).
 */
export function listenWatch(pid: number, port: number, netns: string, fallbackMs = 500): () => boolean {
  let last: string | null = null;
  let lastRead = 0;
  return () => {
    if (!inNamespace(pid, netns)) return false;
    const now = Date.now();
    const counters = tcpInUse(pid);
    if (counters !== null && counters === last && now - lastRead < fallbackMs) return false;
    last = counters;
    lastRead = now;
    return listensInside(pid, port, netns);
  };
}

/** Loopback ports named by a database URL or PG* variables in `envs` (the app's own database). */
export function databasePorts(envs: Record<string, string>): number[] {
  const ports = new Set<number>();
  for (const [name, value] of Object.entries(envs)) {
    if (!/^(DATABASE_URL|.*_DATABASE_URL|POSTGRES_URL)$/.test(name)) continue;
    try {
      const url = new URL(value);
      if (!/^postgres(ql)?:$/.test(url.protocol)) continue;
      if (isLoopback(url.hostname)) ports.add(Number(url.port || 5432));
    } catch {
      // not a URL
    }
  }
  if (envs.PGHOST && isLoopback(envs.PGHOST) && envs.PGPORT) ports.add(Number(envs.PGPORT));
  return [...ports].filter((p) => Number.isInteger(p) && p > 0 && p < 65536).sort((a, b) => a - b);
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '[::1]' || host === '::1';
}
