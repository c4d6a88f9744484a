/**
 * The seccomp filter of isolated sandboxes (issue #20, item 3). First the filter itself: the BPF
 * assembler, the table's numbers against the kernel headers, and the compiled program run by a
 * small interpreter of classic BPF for both architectures. Then, where isolation is available (as
 * root with bubblewrap and pasta, as in CI), each denial from inside a real sandbox, and what must
 * keep working there: node, npm install, python3, an app.
 */
import fs from 'node:fs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createLocalProvider, findFreePort } from '../src/local';
import { assemble, type Instruction, MAX_INSTRUCTIONS } from '../src/local/bpf';
import {
  filterProgram,
  SECCOMP_RET_ALLOW,
  SECCOMP_RET_ERRNO,
  SECCOMP_RET_KILL_PROCESS,
  seccompArch,
  seccompFilter,
} from '../src/local/seccomp';
import {
  AF_INET,
  AF_INET6,
  AF_NETLINK,
  AF_UNIX,
  ARCHES,
  type Arch,
  DENIALS,
  ERRNO,
  NETLINK_ROUTE,
} from '../src/local/seccomp-policy';
import type { Sandbox } from '../src/types';
import { eventually, sandboxProcesses, tempRoot } from './fixtures/local/helpers';

/** Runs a compiled filter on one system call, as the kernel would: the verdict. */
function runFilter(program: Buffer, arch: number, nr: number, args: number[] = []): number {
  const data = Buffer.alloc(64);
  data.writeInt32LE(nr, 0);
  data.writeUInt32LE(arch, 4);
  for (const [i, a] of args.entries()) data.writeBigUInt64LE(BigInt.asUintN(64, BigInt(a)), 16 + 8 * i);
  let a = 0;
  for (let pc = 0; pc < program.length / 8; pc++) {
    const code = program.readUInt16LE(pc * 8);
    const jt = program.readUInt8(pc * 8 + 2);
    const jf = program.readUInt8(pc * 8 + 3);
    const k = program.readUInt32LE(pc * 8 + 4);
    switch (code) {
      case 0x20:
        a = data.readUInt32LE(k);
        break;
      case 0x05:
        pc += k;
        break;
      case 0x15:
        pc += a === k ? jt : jf;
        break;
      case 0x35:
        pc += a >= k ? jt : jf;
        break;
      case 0x45:
        pc += (a & k) !== 0 ? jt : jf;
        break;
      case 0x06:
        return k;
      default:
        throw new Error(`unknown opcode ${code}`);
    }
  }
  throw new Error('ran off the end of the program');
}

const errno = (name: keyof typeof ERRNO) => SECCOMP_RET_ERRNO | ERRNO[name];
const nr = (arch: Arch, name: string) => DENIALS.find((d) => d.syscall === name)![arch]!;

describe('the BPF assembler', () => {
  it('encodes instructions as struct sock_filter and resolves labels to forward offsets', () => {
    const program: Instruction[] = [
      { op: 'ld', offset: 4 },
      { op: 'jeq', k: 0xc000003e, jt: 'ok' },
      { op: 'ret', k: 0x80000000 },
      { op: 'label', name: 'ok' },
      { op: 'ld', offset: 0 },
      { op: 'jset', k: 0x10000000, jf: 'allow' },
      { op: 'ja', to: 'allow' },
      { op: 'label', name: 'allow' },
      { op: 'ret', k: 0x7fff0000 },
    ];
    expect(assemble(program).toString('hex')).toBe(
      [
        '2000 00 00 04000000',
        '1500 01 00 3e0000c0',
        '0600 00 00 00000080',
        '2000 00 00 00000000',
        '4500 00 01 00000010',
        '0500 00 00 00000000',
        '0600 00 00 0000ff7f',
      ]
        .join('')
        .replaceAll(' ', ''),
    );
  });

  it('refuses what the kernel would refuse', () => {
    const ret: Instruction = { op: 'ret', k: 0 };
    expect(() => assemble([])).toThrow(/empty/);
    expect(() => assemble([{ op: 'ld', offset: 0 }])).toThrow(/must end with ret/);
    expect(() => assemble([{ op: 'ld', offset: 2 }, ret])).toThrow(/offset 2/);
    expect(() => assemble([{ op: 'ld', offset: 64 }, ret])).toThrow(/offset 64/);
    expect(() => assemble([{ op: 'jeq', k: 1, jt: 'nowhere' }, ret])).toThrow(/undefined label/);
    expect(() => assemble([{ op: 'label', name: 'x' }, { op: 'label', name: 'x' }, ret])).toThrow(/twice/);
    expect(() => assemble([{ op: 'label', name: 'back' }, ret, { op: 'ja', to: 'back' }, ret])).toThrow(
      /forward/,
    );
    expect(() => assemble([{ op: 'jeq', k: 2 ** 32 }, ret])).toThrow(/32-bit/);
    expect(() => assemble([{ op: 'jeq', k: -1 }, ret])).toThrow(/32-bit/);
    // A conditional jump reaches 255 instructions at most; ja goes further.
    const far = (n: number, jump: Instruction): Instruction[] => [
      jump,
      ...Array.from({ length: n }, () => ret),
      { op: 'label', name: 'far' },
      ret,
    ];
    expect(assemble(far(255, { op: 'jeq', k: 1, jt: 'far' })).readUInt8(2)).toBe(255);
    expect(() => assemble(far(256, { op: 'jeq', k: 1, jt: 'far' }))).toThrow(/256 instructions, over 255/);
    expect(assemble(far(300, { op: 'ja', to: 'far' })).readUInt32LE(4)).toBe(300);
    expect(() => assemble(Array.from({ length: MAX_INSTRUCTIONS + 1 }, () => ret))).toThrow(
      /over the kernel/,
    );
  });
});

/** `#define __NR_<name> <number>` lines of a kernel header, where installed. */
function headerNumbers(file: string): Map<string, number> | null {
  if (!fs.existsSync(file)) return null;
  const numbers = new Map<string, number>();
  for (const m of fs.readFileSync(file, 'utf8').matchAll(/^#define __NR(?:3264)?_(\w+)\s+(\d+)\s*$/gm))
    numbers.set(m[1]!, Number(m[2]));
  return numbers;
}

const HEADERS: Record<Arch, string> = {
  x86_64: '/usr/include/x86_64-linux-gnu/asm/unistd_64.h',
  aarch64: '/usr/include/asm-generic/unistd.h',
};

describe('the seccomp policy', () => {
  it("every row has a reason, and its numbers are the kernel headers' (where installed)", () => {
    let checked = 0;
    for (const arch of Object.keys(ARCHES) as Arch[]) {
      const numbers = headerNumbers(HEADERS[arch]);
      for (const d of DENIALS) {
        expect(d.why.length, d.syscall).toBeGreaterThan(10);
        const n = d[arch];
        // Calls added since Linux 5.1 have one number on every architecture.
        if (n !== null && n >= 424) expect(d.x86_64, d.syscall).toBe(d.aarch64);
        if (!numbers) continue;
        if (numbers.has(d.syscall)) {
          expect(n, `${d.syscall} on ${arch}`).toBe(numbers.get(d.syscall));
          checked++;
        } else if (n !== null) {
          // Newer than the installed headers: only numbers past the headers' last.
          expect(n, `${d.syscall} on ${arch}`).toBeGreaterThan(Math.max(...numbers.values()));
        }
      }
    }
    if (fs.existsSync(HEADERS.x86_64)) expect(checked).toBeGreaterThan(100);
  });

  for (const arch of Object.keys(ARCHES) as Arch[]) {
    it(`on ${arch}: denies each row, kills other ABIs, and allows the rest`, () => {
      const program = assemble(filterProgram(arch));
      const audit = ARCHES[arch].audit;
      const run = (name: string, ...args: number[]) => runFilter(program, audit, nr(arch, name), args);
      for (const d of DENIALS) {
        if (d[arch] === null || d.when) continue;
        expect(runFilter(program, audit, d[arch]!), d.syscall).toBe(errno(d.errno ?? 'EPERM'));
      }
      expect(run('clone3')).toBe(errno('ENOSYS'));
      // Namespaces: with any CLONE_NEW* flag; fork and threads stay allowed.
      expect(run('clone', 0x10000000 | 17)).toBe(errno('EPERM')); // CLONE_NEWUSER|SIGCHLD
      expect(run('clone', 0x40000000)).toBe(errno('EPERM')); // CLONE_NEWNET
      expect(run('clone', 0x01200011)).toBe(SECCOMP_RET_ALLOW); // glibc's fork()
      expect(run('clone', 0x003d0f00)).toBe(SECCOMP_RET_ALLOW); // pthread_create
      expect(run('unshare', 0x10000000)).toBe(errno('EPERM'));
      expect(run('unshare', 0x80)).toBe(errno('EPERM')); // CLONE_NEWTIME
      expect(run('unshare', 0x400)).toBe(SECCOMP_RET_ALLOW); // CLONE_FILES
      // Only the low 32 bits of an int argument count (the kernel ignores the rest).
      expect(run('unshare', 2 ** 32)).toBe(SECCOMP_RET_ALLOW);
      expect(run('personality', 0)).toBe(SECCOMP_RET_ALLOW);
      expect(run('personality', 0xffffffff)).toBe(SECCOMP_RET_ALLOW);
      expect(run('personality', 0x0400000)).toBe(errno('EPERM')); // READ_IMPLIES_EXEC
      expect(run('personality', 0x0040000)).toBe(errno('EPERM')); // ADDR_NO_RANDOMIZE
      for (const family of [AF_UNIX, AF_INET, AF_INET6])
        expect(run('socket', family, 1, 0)).toBe(SECCOMP_RET_ALLOW);
      expect(run('socket', 17, 3, 0)).toBe(errno('EAFNOSUPPORT')); // AF_PACKET
      expect(run('socket', 40, 1, 0)).toBe(errno('EAFNOSUPPORT')); // AF_VSOCK
      expect(run('socket', AF_NETLINK, 3, NETLINK_ROUTE)).toBe(SECCOMP_RET_ALLOW);
      expect(run('socket', AF_NETLINK, 3, 6)).toBe(errno('EPROTONOSUPPORT')); // XFRM
      expect(run('socket', AF_NETLINK, 3, 12)).toBe(errno('EPROTONOSUPPORT')); // netfilter
      // Calls no row names: read, write, openat, execve, mmap.
      for (const other of arch === 'x86_64' ? [0, 1, 257, 59, 9] : [63, 64, 56, 221, 222])
        expect(runFilter(program, audit, other), String(other)).toBe(SECCOMP_RET_ALLOW);
      // Another ABI's numbers mean other calls: the process is killed.
      expect(runFilter(program, 0x40000003, 1)).toBe(SECCOMP_RET_KILL_PROCESS); // i386
      expect(runFilter(program, 0x40000028, 1)).toBe(SECCOMP_RET_KILL_PROCESS); // arm
      if (arch === 'x86_64')
        expect(runFilter(program, audit, 0x40000000 + 272)).toBe(SECCOMP_RET_KILL_PROCESS);
    });
  }

  it('is compiled for this machine', () => {
    const arch = seccompArch();
    if (process.arch === 'x64') expect(arch).toBe('x86_64');
    if (arch) expect(seccompFilter()?.equals(assemble(filterProgram(arch)))).toBe(true);
    expect(seccompArch('riscv64')).toBeNull();
  });
});

const root = tempRoot('coderunner-seccomp-');
const isolated = createLocalProvider({ rootDir: root.rootDir }).isolation().mode === 'sandbox';
const created: Sandbox[] = [];

afterEach(async () => {
  await Promise.all(created.splice(0).map((s) => s.kill()));
});

afterAll(async () => {
  if (isolated) await eventually(() => expect(sandboxProcesses(root.rootDir)).toEqual([]), 5_000);
  root.cleanup();
});

async function newSandbox(name: string): Promise<Sandbox> {
  const provider = createLocalProvider({ rootDir: root.rootDir, killGraceMs: 500 });
  const sandbox = await provider.create({
    metadata: { deploymentId: `d-${name}`, projectId: name, role: 'app' },
  });
  created.push(sandbox);
  return sandbox;
}

/**
 * Each call in a child process of its own (what it changes, a namespace or a personality, stays
 * there), through libc's syscall(): 0 when the call succeeded, else its errno. Debian's python3
 * (/usr/bin, mounted in every sandbox) with ctypes: no compiler needed.
 */
const PROBE = `
import ctypes, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = json.loads(sys.argv[1])

def arg(a):
    return ctypes.c_long(a) if isinstance(a, int) else a

def raw(name, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *[arg(a) for a in args])
    return r, ctypes.get_errno()

def in_child(fn):
    pid = os.fork()
    if pid == 0:
        try:
            code = fn()
        except BaseException:
            code = 255
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

def call(name, *args):
    def fn():
        r, e = raw(name, *args)
        return 0 if r >= 0 else e
    return in_child(fn)

def clone_newuser():
    r, e = raw('clone', 0x10000000 | 17, 0, 0, 0, 0)  # CLONE_NEWUSER | SIGCHLD
    if r == 0:
        os._exit(0)
    if r < 0:
        return e
    os.waitpid(r, 0)
    return 0

def sock(family, kind, proto=0):
    def fn():
        try:
            socket.socket(family, kind, proto).close()
            return 0
        except OSError as err:
            return err.errno
    return in_child(fn)

perf = ctypes.create_string_buffer(128)
ctypes.c_uint32.from_buffer(perf, 0).value = 1      # PERF_TYPE_SOFTWARE
ctypes.c_uint32.from_buffer(perf, 4).value = 128    # size
ctypes.c_uint64.from_buffer(perf, 8).value = 1      # PERF_COUNT_SW_TASK_CLOCK
ctypes.c_uint64.from_buffer(perf, 40).value = 1 | 32 | 64  # disabled, exclude_kernel, exclude_hv
uring = ctypes.create_string_buffer(120)

status = dict(line.split(':\\t', 1) for line in open('/proc/self/status').read().splitlines() if ':\\t' in line)
print(json.dumps({
    'seccomp': status.get('Seccomp', '').strip(),
    'noNewPrivs': status.get('NoNewPrivs', '').strip(),
    'unshare(CLONE_NEWUSER)': call('unshare', 0x10000000),
    'unshare(CLONE_NEWNET)': call('unshare', 0x40000000),
    'clone(CLONE_NEWUSER)': in_child(clone_newuser),
    'clone3': call('clone3', 0, 0),
    'setns': call('setns', -1, 0),
    'mount': call('mount', b'none', b'/tmp', b'tmpfs', 0, 0),
    'fsopen': call('fsopen', b'tmpfs', 0),
    'add_key': call('add_key', b'user', b'coderunner', b'secret', 6, -2),
    'keyctl': call('keyctl', 0, -3, 0),
    'bpf': call('bpf', 0, 0, 0),
    'perf_event_open': call('perf_event_open', ctypes.addressof(perf), 0, -1, -1, 0),
    'userfaultfd': call('userfaultfd', 0o2000000 | 1),
    'io_uring_setup': call('io_uring_setup', 1, ctypes.addressof(uring)),
    'ptrace(PTRACE_TRACEME)': call('ptrace', 0, 0, 0, 0),
    'personality(READ_IMPLIES_EXEC)': call('personality', 0x0400000),
    'personality(query)': call('personality', 0xffffffff),
    'unshare(CLONE_FILES)': call('unshare', 0x400),
    'AF_VSOCK': sock(40, socket.SOCK_STREAM),
    'AF_PACKET': sock(17, socket.SOCK_RAW),
    'NETLINK_XFRM': sock(16, socket.SOCK_RAW, 6),
    'NETLINK_NETFILTER': sock(16, socket.SOCK_RAW, 12),
    'NETLINK_ROUTE': sock(16, socket.SOCK_RAW, 0),
    'AF_INET': sock(2, socket.SOCK_STREAM),
    'AF_UNIX': sock(1, socket.SOCK_STREAM),
}))
`;

describe.skipIf(!isolated)('the seccomp filter in a sandbox', () => {
  it('denies namespaces, mounts, keyrings, bpf, perf, userfaultfd, io_uring, ptrace, personalities and odd sockets', async () => {
    const sandbox = await newSandbox('denied');
    const arch = seccompArch()!;
    const numbers = Object.fromEntries(
      DENIALS.filter((d) => d[arch] !== null).map((d) => [d.syscall, d[arch]]),
    );
    await sandbox.writeFiles([{ path: 'probe.py', data: PROBE }]);
    const result = await sandbox.run(`python3 probe.py '${JSON.stringify(numbers)}'`, { timeoutMs: 60_000 });
    expect(result.exitCode, result.stderr).toBe(0);
    const EPERM = ERRNO.EPERM;
    expect(JSON.parse(result.stdout)).toEqual({
      seccomp: '2',
      noNewPrivs: '1',
      'unshare(CLONE_NEWUSER)': EPERM,
      'unshare(CLONE_NEWNET)': EPERM,
      'clone(CLONE_NEWUSER)': EPERM,
      clone3: ERRNO.ENOSYS,
      setns: EPERM,
      mount: EPERM,
      fsopen: EPERM,
      add_key: EPERM,
      keyctl: EPERM,
      bpf: EPERM,
      perf_event_open: EPERM,
      userfaultfd: EPERM,
      io_uring_setup: EPERM,
      'ptrace(PTRACE_TRACEME)': EPERM,
      'personality(READ_IMPLIES_EXEC)': EPERM,
      'personality(query)': 0,
      'unshare(CLONE_FILES)': 0,
      AF_VSOCK: ERRNO.EAFNOSUPPORT,
      AF_PACKET: ERRNO.EAFNOSUPPORT,
      NETLINK_XFRM: ERRNO.EPROTONOSUPPORT,
      NETLINK_NETFILTER: ERRNO.EPROTONOSUPPORT,
      NETLINK_ROUTE: 0,
      AF_INET: 0,
      AF_UNIX: 0,
    });
    // util-linux's unshare, as an attacker would try it first.
    const unshare = await sandbox.run('unshare -Ur id', { timeoutMs: 60_000 });
    expect(unshare.exitCode).not.toBe(0);
    expect(unshare.stdout).not.toMatch(/uid=0/);
    expect(unshare.stderr).toMatch(/Operation not permitted/);
  });

  it("hides /proc/config.gz, and bubblewrap's descriptor of the filter is closed", async () => {
    const sandbox = await newSandbox('proc');
    // The kernel's build options (readable by anyone on the host) tell which exploits apply.
    const config = await sandbox.run('cat /proc/config.gz 2>/dev/null | wc -c');
    expect(config.stdout.trim(), config.stderr).toBe('0');
    const fds = await sandbox.run('ls /proc/$$/fd');
    expect(fds.stdout.split('\n')).toEqual(expect.arrayContaining(['0', '1', '2']));
    for (const fd of ['3', '4', '5']) expect(fds.stdout.split('\n')).not.toContain(fd);
  });

  it('node, npm install of a local package, python3 and an app still work, the app filtered too', async () => {
    const sandbox = await newSandbox('works');
    await sandbox.writeFiles([
      { path: 'dep/package.json', data: JSON.stringify({ name: 'dep', version: '1.0.0', main: 'index.js' }) },
      { path: 'dep/index.js', data: "module.exports = 'dep works';" },
      {
        path: 'package.json',
        data: JSON.stringify({ name: 'app', version: '1.0.0', dependencies: { dep: 'file:dep-1.0.0.tgz' } }),
      },
      {
        path: 'check.js',
        data: `
const { Worker } = require('worker_threads');
const os = require('os');
const http = require('http');
const worker = new Promise((resolve) => new Worker('require("worker_threads").parentPort.postMessage(6 * 7)', { eval: true }).once('message', resolve));
const server = http.createServer((q, r) => r.end('pong')).listen(0, '127.0.0.1', async () => {
  const pong = await (await fetch('http://127.0.0.1:' + server.address().port)).text();
  server.close();
  console.log(JSON.stringify({
    dep: require('dep'),
    worker: await worker,
    child: require('child_process').execSync('echo child').toString().trim(),
    random: require('crypto').randomBytes(8).length,
    interfaces: Object.keys(os.networkInterfaces()).includes('lo'),
    pong,
  }));
});`,
      },
      {
        path: 'server.js',
        data: `require('http').createServer((q, r) => r.end(require('fs').readFileSync('/proc/self/status', 'utf8').match(/^Seccomp:\\s*(\\d)/m)[1])).listen(process.env.PORT, '127.0.0.1');`,
      },
    ]);
    const env = { envs: { npm_config_update_notifier: 'false' }, timeoutMs: 180_000 };
    const pack = await sandbox.run('cd dep && npm pack --silent && mv dep-1.0.0.tgz ..', env);
    expect(pack.exitCode, pack.stderr).toBe(0);
    const install = await sandbox.run('npm install --offline --no-audit --no-fund', env);
    expect(install.exitCode, install.stderr).toBe(0);
    const node = await sandbox.run('node check.js', env);
    expect(node.exitCode, node.stderr).toBe(0);
    expect(JSON.parse(node.stdout)).toEqual({
      dep: 'dep works',
      worker: 42,
      child: 'child',
      random: 8,
      interfaces: true,
      pong: 'pong',
    });
    const python = await sandbox.run(
      `python3 -c "import threading, subprocess, sqlite3, ssl, json; t = threading.Thread(target=print, args=('thread',)); t.start(); t.join(); print(subprocess.run(['echo', 'sub'], capture_output=True, text=True).stdout.strip(), sqlite3.connect(':memory:').execute('select 1').fetchone()[0])"`,
      env,
    );
    expect(python.exitCode, python.stderr).toBe(0);
    expect(python.stdout).toBe('thread\nsub 1\n');

    const app = await sandbox.startApp({ command: 'node server.js', port: await findFreePort() });
    await sandbox.waitUntilReady(app, { timeoutMs: 30_000 });
    expect(await (await fetch(app.internalUrl, { signal: AbortSignal.timeout(10_000) })).text()).toBe('2');
  });
});
