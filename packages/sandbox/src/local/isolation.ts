/**
 * Tenant isolation of the local provider (CODERUNNER_ISOLATION): every process of a sandbox runs
 * inside bubblewrap, as the sandbox's own uid, in its own PID, IPC, UTS, mount and network
 * namespaces and its own cgroup. `auto` isolates when this machine can (root, bwrap, pasta, ip,
 * nsenter, writable cgroups) and otherwise runs unisolated after one loud warning; `sandbox`
 * refuses to run without it; `none` never isolates.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { SandboxError } from '../types';
import { type CgroupLayout, cgroupsWritable, detectCgroups } from './cgroups';
import { SANDBOX_PATH } from './environment';
import { SECCOMP_FD, seccompFilter } from './seccomp';

export type IsolationMode = 'auto' | 'sandbox' | 'none';
export const ISOLATION_MODES: readonly IsolationMode[] = ['auto', 'sandbox', 'none'];

export const INSTALL_HINT = 'apt-get install -y bubblewrap passt iproute2 util-linux';

export interface IsolationTools {
  bwrap: string;
  pasta: string;
  ip: string;
  nsenter: string;
  setpriv: string;
  cgroups: CgroupLayout;
  /** The seccomp filter of every sandboxed command (seccomp.ts), for bubblewrap's SECCOMP_FD. */
  seccomp: Buffer;
}

export interface IsolationStatus {
  requested: IsolationMode;
  /** What sandboxes get: full isolation, or none. */
  mode: 'sandbox' | 'none';
  /** Why isolation is off when it was not turned off on purpose (empty otherwise). */
  missing: string[];
  tools: IsolationTools | null;
}

/** Inside the sandbox: where its app folder and HOME are mounted. */
export const INSIDE_APP = '/sandbox/app';
export const INSIDE_HOME = '/sandbox/home';
/** Inside the sandbox: the Node.js chosen for it (read-only), when it is not the host's. */
export const NODE_INSIDE = '/sandbox/node';

function which(name: string): string | null {
  for (const dir of SANDBOX_PATH.split(':')) {
    const full = path.join(dir, name);
    try {
      fs.accessSync(full, fs.constants.X_OK);
      return full;
    } catch {
      // next
    }
  }
  return null;
}

const cache = new Map<IsolationMode, IsolationStatus>();

/** What this machine offers; checked once per mode (runs bwrap once to see namespaces are allowed). */
export function detectIsolation(requested: IsolationMode = 'auto'): IsolationStatus {
  const known = cache.get(requested);
  if (known) return known;
  const status = detect(requested);
  cache.set(requested, status);
  return status;
}

function detect(requested: IsolationMode): IsolationStatus {
  if (requested === 'none') return { requested, mode: 'none', missing: [], tools: null };
  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push('Linux');
  if (process.getuid?.() !== 0) missing.push('running as root (to switch to per-sandbox uids)');
  const bwrap = which('bwrap');
  const pasta = which('pasta');
  const ip = which('ip');
  const nsenter = which('nsenter');
  const setpriv = which('setpriv');
  if (!bwrap) missing.push('bwrap (Debian package bubblewrap)');
  if (!pasta) missing.push('pasta (Debian package passt)');
  if (!ip) missing.push('ip (Debian package iproute2)');
  if (!nsenter) missing.push('nsenter (Debian package util-linux)');
  if (!setpriv) missing.push('setpriv (Debian package util-linux)');
  const cgroups = detectCgroups();
  if (typeof cgroups === 'string') missing.push(cgroups);
  else if (missing.length === 0 && !cgroupsWritable(cgroups))
    missing.push('writable cgroups under /sys/fs/cgroup');
  const filter = seccompFilter();
  if (!filter)
    missing.push(`a seccomp filter for ${process.arch} (seccomp-policy.ts has x86_64 and aarch64)`);
  if (missing.length === 0 && bwrap && filter) {
    try {
      // With the seccomp filter (read from stdin here): a kernel without seccomp fails here, not at
      // every command.
      execFileSync(
        bwrap,
        [
          '--ro-bind',
          '/',
          '/',
          '--unshare-pid',
          '--unshare-ipc',
          '--unshare-uts',
          '--unshare-net',
          '--seccomp',
          '0',
          'true',
        ],
        { input: filter, stdio: ['pipe', 'ignore', 'ignore'], timeout: 10_000 },
      );
    } catch {
      missing.push('namespaces and seccomp (bwrap could not set them up here)');
    }
  }
  if (missing.length > 0 || typeof cgroups === 'string') {
    if (requested === 'sandbox') {
      throw new SandboxError(
        `CODERUNNER_ISOLATION=sandbox, but this machine lacks: ${missing.join('; ')}. Install with \`${INSTALL_HINT}\` and run the server as root, or set CODERUNNER_ISOLATION=auto or none`,
      );
    }
    return { requested, mode: 'none', missing, tools: null };
  }
  return {
    requested,
    mode: 'sandbox',
    missing: [],
    tools: {
      bwrap: bwrap!,
      pasta: pasta!,
      ip: ip!,
      nsenter: nsenter!,
      setpriv: setpriv!,
      cgroups,
      seccomp: filter!,
    },
  };
}

/** The one warning `auto` gives when it cannot isolate. */
export function isolationWarning(status: IsolationStatus): string | null {
  if (status.mode === 'sandbox') return null;
  if (status.requested === 'none')
    return 'CODERUNNER_ISOLATION=none: deployed apps are NOT isolated from each other or from this machine';
  return (
    `TENANT ISOLATION IS OFF: deployed apps can read each other's files, environment and databases and ` +
    `reach every service on this machine. Missing: ${status.missing.join('; ')}. Install with ` +
    `\`${INSTALL_HINT}\` and run the server as root (or set CODERUNNER_ISOLATION=none to acknowledge)`
  );
}

/** Read-only system paths mounted into every sandbox when they exist. */
const SYSTEM_FILES = [
  '/etc/ssl',
  '/etc/ca-certificates',
  '/etc/ca-certificates.conf',
  '/etc/resolv.conf',
  '/etc/hosts',
  '/etc/nsswitch.conf',
  '/etc/host.conf',
  '/etc/gai.conf',
  '/etc/localtime',
  '/etc/alternatives',
  '/etc/mime.types',
  '/etc/ld.so.cache',
  '/etc/ld.so.conf',
  '/etc/ld.so.conf.d',
];

export interface BwrapOptions {
  uid: number;
  gid: number;
  app: string;
  home: string;
  /** passwd and group files naming the sandbox's uid (server-owned, read-only inside). */
  passwd: string;
  group: string;
  tmpBytes: number;
  /** Extra read-only mounts: [host path, path inside]. */
  readOnly?: [string, string][];
}

/**
 * Files of /proc that tell a tenant about the machine rather than its sandbox, covered with
 * /dev/null where they exist (as Docker masks them): the kernel's build options (which exploits
 * apply), its memory, and timers and scheduler state of every process on the machine.
 */
const MASKED_PROC = ['/proc/config.gz', '/proc/kcore', '/proc/keys', '/proc/timer_list', '/proc/sched_debug'];
let maskedProc: string[] | undefined;

function procMasks(): string[] {
  maskedProc ??= MASKED_PROC.filter((file) => fs.existsSync(file));
  return maskedProc.flatMap((file) => ['--ro-bind', '/dev/null', file]);
}

/** /usr read-only, and /bin, /lib, ... as on the host (symlinks into /usr, or read-only folders). */
export function systemArgs(): string[] {
  const args = ['--ro-bind', '/usr', '/usr'];
  for (const top of ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']) {
    const full = `/${top}`;
    let link: string | null = null;
    try {
      link = fs.readlinkSync(full);
    } catch {
      if (!fs.existsSync(full)) continue;
    }
    if (link !== null) args.push('--symlink', link, full);
    else args.push('--ro-bind', full, full);
  }
  return args;
}

/**
 * bubblewrap's capabilities for a sandboxed process: root inside keeps only what setpriv needs to
 * switch to the sandbox's uid (which drops these too).
 */
export const SETPRIV_CAPS = [
  '--cap-drop',
  'ALL',
  '--cap-add',
  'CAP_SETUID',
  '--cap-add',
  'CAP_SETGID',
  '--cap-add',
  'CAP_SETPCAP',
];

/** bubblewrap's arguments (everything before the command). */
export function bwrapArgs(o: BwrapOptions): string[] {
  const args = [
    '--unshare-pid',
    '--unshare-ipc',
    '--unshare-uts',
    '--unshare-cgroup-try',
    '--hostname',
    'sandbox',
    '--new-session',
    ...SETPRIV_CAPS,
    ...systemArgs(),
  ];
  // bwrap creates missing parents with the server's umask: make the ones the sandbox must read 0755.
  args.push('--perms', '0755', '--dir', '/etc');
  for (const file of SYSTEM_FILES) args.push('--ro-bind-try', file, file);
  args.push('--ro-bind', o.passwd, '/etc/passwd', '--ro-bind', o.group, '/etc/group');
  args.push('--proc', '/proc', '--dev', '/dev', ...procMasks());
  args.push('--perms', '1777', '--size', String(o.tmpBytes), '--tmpfs', '/tmp');
  args.push('--perms', '0755', '--dir', '/sandbox');
  args.push('--bind', o.app, INSIDE_APP, '--bind', o.home, INSIDE_HOME);
  for (const [host, inside] of o.readOnly ?? []) args.push('--ro-bind', host, inside);
  // Root inside cannot enter the sandbox's 0700 folders (no CAP_DAC_OVERRIDE): the launcher, as the
  // sandbox's uid, changes to the working directory.
  args.push('--chdir', '/');
  // The seccomp filter (seccomp.ts), read from SECCOMP_FD, applies from bubblewrap's exec of the
  // command on: to the gate and setpriv as root, and to everything the sandbox's code runs.
  args.push('--seccomp', String(SECCOMP_FD));
  return args;
}

/**
 * What switches to the sandbox's uid inside bubblewrap (bwrap 0.8 refuses --uid without a user
 * namespace, whose mapping would make the uid root outside): setpriv, with no capabilities left,
 * an empty bounding set and no_new_privs (setuid binaries cannot raise privileges back).
 */
export function dropPrivileges(setpriv: string, uid: number): string[] {
  return [
    setpriv,
    `--reuid=${uid}`,
    `--regid=${uid}`,
    '--clear-groups',
    '--inh-caps=-all',
    '--bounding-set=-all',
    '--no-new-privs',
    '--',
  ];
}

/** Inside bubblewrap, as root still: wait for the go on fd 3 (the network is up), close it, go on. */
const GATE = 'read -r _ <&3 || exit 125; exec 3<&-; exec "$@"';

/** The file descriptor on which an isolated command receives its environment (see envScript). */
export const ENV_FD = 4;
/** Set by the last line of envScript: the whole environment arrived. */
const ENV_LOADED = 'coderunner_env_loaded';
/**
 * As the sandbox's uid, after setpriv: change to the working directory, read the environment from
 * ENV_FD, close it, go on. Every stage
 * before this one runs as root (the shell joining the cgroups, nsenter, bubblewrap, the gate,
 * setpriv) and gets a fixed environment of the server's making: a variable of the tenant's (say
 * LD_PRELOAD) must never reach a root process.
 */
const LAUNCH = `cd -- "$1" || exit 125; shift; eval "$(cat <&${ENV_FD})"; [ "$${ENV_LOADED}" = 1 ] || exit 125; unset ${ENV_LOADED}; exec ${ENV_FD}<&-; exec "$@"`;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** What LAUNCH evaluates: `export NAME='value'` for each variable (names checked, values quoted). */
export function envScript(env: Record<string, string>): string {
  let script = '';
  for (const [name, value] of Object.entries(env)) {
    if (!ENV_NAME.test(name)) throw new Error(`invalid environment variable name: ${JSON.stringify(name)}`);
    script += `export ${name}='${value.replaceAll("'", "'\\''")}'\n`;
  }
  return `${script}${ENV_LOADED}=1\n`;
}

/**
 * The command line that runs `file args` isolated: a root shell moves itself into the cgroups
 * (`procs` files), enters the network namespace, and execs bubblewrap, which drops to the uid.
 * Exit code 125 means the cgroup could not be joined, or the gate closed without a go.
 * With `gate`, the command waits, once bubblewrap has set its namespaces up, for a line on fd 3
 * (which the caller passes as a pipe and writes to once the sandbox's network is up): the network
 * helper starts while bubblewrap does, and the sandbox's code never runs before it is there.
 */
export function isolatedCommand(
  tools: IsolationTools,
  procs: string[],
  netnsFile: string,
  bwrap: string[],
  uid: number,
  cwd: string,
  file: string,
  args: string[],
  gate = false,
): { file: string; args: string[] } {
  const join =
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"';
  return {
    file: '/bin/sh',
    args: [
      '-c',
      join,
      'sh',
      String(procs.length),
      ...procs,
      tools.nsenter,
      `--net=${netnsFile}`,
      '--',
      tools.bwrap,
      ...bwrap,
      '--',
      ...(gate ? ['/bin/sh', '-c', GATE, 'sh'] : []),
      ...dropPrivileges(tools.setpriv, uid),
      '/bin/sh',
      '-c',
      LAUNCH,
      'sh',
      cwd,
      file,
      ...args,
    ],
  };
}
