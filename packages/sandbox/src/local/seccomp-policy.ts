/**
 * What sandboxed code may not ask of the kernel: the seccomp policy of every isolated command, as a
 * table read by people (each row says why) and compiled by seccomp.ts when the server starts.
 *
 * It denies at least what Docker's default profile denies a container without added capabilities,
 * and more: io_uring, ptrace and the socket families a web app has no use for. It is a list of
 * denials, not of allowed calls: a system call that a newer kernel adds is allowed until a row here
 * names it (Docker's allowlist would deny it), so that a runtime built for that kernel keeps working.
 *
 * Numbers: x86_64 from asm/unistd_64.h; aarch64 from asm-generic/unistd.h (every call from 424 on has
 * one number on all architectures). `null` where the architecture has no such call.
 * test/local-seccomp.test.ts checks them against the kernel headers where those are installed.
 */

export type Arch = 'x86_64' | 'aarch64';

export const ARCHES: Record<Arch, { audit: number; node: NodeJS.Architecture; x32: boolean }> = {
  // AUDIT_ARCH_X86_64; x32 calls are x86_64's numbers with bit 30 set (__X32_SYSCALL_BIT).
  x86_64: { audit: 0xc000003e, node: 'x64', x32: true },
  aarch64: { audit: 0xc00000b7, node: 'arm64', x32: false },
};

/** What a denied call returns (errno values are the same on both architectures). */
export const ERRNO = { EPERM: 1, ENOSYS: 38, EAFNOSUPPORT: 97, EPROTONOSUPPORT: 93 } as const;
export type Errno = keyof typeof ERRNO;

/** A test on the low 32 bits of an argument (every argument tested here is an int or flags). */
export type Condition =
  | { arg: number; anyBitOf: number }
  | { arg: number; oneOf: readonly number[] }
  | { arg: number; noneOf: readonly number[] };

export interface Denial {
  syscall: string;
  x86_64: number | null;
  aarch64: number | null;
  /** The call fails with this errno (default EPERM). */
  errno?: Errno;
  /** Only calls that meet every condition are denied; without any, every call is. */
  when?: readonly Condition[];
  why: string;
}

/** CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET: Docker's mask for clone. */
export const CLONE_NAMESPACES = 0x7e020000;
/** unshare also takes CLONE_NEWTIME (0x80; a signal number's bits in clone's flags). */
export const UNSHARE_NAMESPACES = CLONE_NAMESPACES | 0x80;

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const NETLINK_ROUTE = 0;
export const NETLINK_SOCK_DIAG = 4;

/** personality(2) values Docker allows: PER_LINUX, PER_LINUX32, each with UNAME26, and the query. */
export const PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff] as const;

const NAMESPACES =
  'a new namespace: a user namespace makes its creator root with every capability inside it, which ' +
  'opens mounts, netfilter and raw sockets to it (the road of most container escapes of late years)';
const MOUNTS = 'mounts change what the sandbox sees of the file system; bubblewrap set up all it needs';
const KEYS = "the kernel's keyrings are not namespaced per sandbox and have carried privilege escalations";
const MODULES = 'loads, unloads or replaces kernel code';
const TRACING =
  'reads or changes another process (same uid): nothing an install, build or app needs; ptrace has ' +
  'carried privilege escalations (e.g. CVE-2019-13272)';
const CLOCK = "sets the machine's clock, which is not namespaced";
const HOST = 'acts on the whole machine (needs a capability the sandbox does not have): no use to a tenant';
const NUMA = "steers memory across the machine's NUMA nodes; Docker denies it without CAP_SYS_NICE";
const OBSOLETE = 'obsolete; Docker denies it';

export const DENIALS: readonly Denial[] = [
  // Namespaces and mounts
  {
    syscall: 'clone',
    x86_64: 56,
    aarch64: 220,
    when: [{ arg: 0, anyBitOf: CLONE_NAMESPACES }],
    why: `with a CLONE_NEW* flag: ${NAMESPACES}. Plain clone (fork, threads) stays allowed`,
  },
  {
    syscall: 'clone3',
    x86_64: 435,
    aarch64: 435,
    errno: 'ENOSYS',
    why: 'its flags are in memory, where seccomp cannot look; ENOSYS makes libc fall back to clone',
  },
  {
    syscall: 'unshare',
    x86_64: 272,
    aarch64: 97,
    when: [{ arg: 0, anyBitOf: UNSHARE_NAMESPACES }],
    why: `with a CLONE_NEW* flag: ${NAMESPACES}. unshare(CLONE_FS|CLONE_FILES) stays allowed`,
  },
  { syscall: 'setns', x86_64: 308, aarch64: 268, why: 'enters another namespace' },
  { syscall: 'mount', x86_64: 165, aarch64: 40, why: MOUNTS },
  { syscall: 'umount2', x86_64: 166, aarch64: 39, why: `${MOUNTS}; unmounting could uncover what it hides` },
  { syscall: 'pivot_root', x86_64: 155, aarch64: 41, why: MOUNTS },
  { syscall: 'chroot', x86_64: 161, aarch64: 51, why: MOUNTS },
  { syscall: 'open_tree', x86_64: 428, aarch64: 428, why: `the new mount API: ${MOUNTS}` },
  { syscall: 'move_mount', x86_64: 429, aarch64: 429, why: `the new mount API: ${MOUNTS}` },
  { syscall: 'fsopen', x86_64: 430, aarch64: 430, why: `the new mount API: ${MOUNTS}` },
  { syscall: 'fsconfig', x86_64: 431, aarch64: 431, why: `the new mount API: ${MOUNTS}` },
  { syscall: 'fsmount', x86_64: 432, aarch64: 432, why: `the new mount API: ${MOUNTS}` },
  { syscall: 'fspick', x86_64: 433, aarch64: 433, why: `the new mount API: ${MOUNTS}` },
  { syscall: 'mount_setattr', x86_64: 442, aarch64: 442, why: `the new mount API: ${MOUNTS}` },
  { syscall: 'open_tree_attr', x86_64: 467, aarch64: 467, why: `the new mount API (Linux 6.15): ${MOUNTS}` },

  // Kernel surfaces that container escapes went through
  { syscall: 'add_key', x86_64: 248, aarch64: 217, why: KEYS },
  { syscall: 'request_key', x86_64: 249, aarch64: 218, why: KEYS },
  { syscall: 'keyctl', x86_64: 250, aarch64: 219, why: KEYS },
  { syscall: 'bpf', x86_64: 321, aarch64: 280, why: 'loads programs into the kernel (eBPF verifier bugs)' },
  {
    syscall: 'perf_event_open',
    x86_64: 298,
    aarch64: 241,
    why: 'performance counters: a large kernel surface and a side channel on other tenants',
  },
  {
    syscall: 'userfaultfd',
    x86_64: 323,
    aarch64: 282,
    why: 'lets a process stall the kernel mid-copy, the usual way to win a kernel race in an exploit',
  },
  {
    syscall: 'io_uring_setup',
    x86_64: 425,
    aarch64: 425,
    why: 'io_uring: a second system-call interface that seccomp cannot see into, and a frequent source of kernel exploits (Google and ChromeOS turned it off); Node and Python fall back to threads',
  },
  { syscall: 'io_uring_enter', x86_64: 426, aarch64: 426, why: 'io_uring (see io_uring_setup)' },
  { syscall: 'io_uring_register', x86_64: 427, aarch64: 427, why: 'io_uring (see io_uring_setup)' },

  // Kernel code, the machine's boot and clock
  { syscall: 'init_module', x86_64: 175, aarch64: 105, why: MODULES },
  { syscall: 'finit_module', x86_64: 313, aarch64: 273, why: MODULES },
  { syscall: 'delete_module', x86_64: 176, aarch64: 106, why: MODULES },
  { syscall: 'create_module', x86_64: 174, aarch64: null, why: MODULES },
  { syscall: 'get_kernel_syms', x86_64: 177, aarch64: null, why: OBSOLETE },
  { syscall: 'query_module', x86_64: 178, aarch64: null, why: OBSOLETE },
  { syscall: 'kexec_load', x86_64: 246, aarch64: 104, why: MODULES },
  { syscall: 'kexec_file_load', x86_64: 320, aarch64: 294, why: MODULES },
  { syscall: 'reboot', x86_64: 169, aarch64: 142, why: HOST },
  { syscall: 'settimeofday', x86_64: 164, aarch64: 170, why: CLOCK },
  { syscall: 'clock_settime', x86_64: 227, aarch64: 112, why: CLOCK },
  { syscall: 'clock_adjtime', x86_64: 305, aarch64: 266, why: CLOCK },

  // Other processes
  { syscall: 'ptrace', x86_64: 101, aarch64: 117, why: TRACING },
  { syscall: 'process_vm_readv', x86_64: 310, aarch64: 270, why: TRACING },
  { syscall: 'process_vm_writev', x86_64: 311, aarch64: 271, why: TRACING },
  { syscall: 'kcmp', x86_64: 312, aarch64: 272, why: TRACING },
  { syscall: 'pidfd_getfd', x86_64: 438, aarch64: 438, why: TRACING },
  { syscall: 'process_madvise', x86_64: 440, aarch64: 440, why: TRACING },

  // The machine as a whole
  { syscall: 'acct', x86_64: 163, aarch64: 89, why: HOST },
  { syscall: 'swapon', x86_64: 167, aarch64: 224, why: HOST },
  { syscall: 'swapoff', x86_64: 168, aarch64: 225, why: HOST },
  {
    syscall: 'syslog',
    x86_64: 103,
    aarch64: 116,
    why: "reads the kernel's log (addresses, other tenants' events)",
  },
  { syscall: 'quotactl', x86_64: 179, aarch64: 60, why: HOST },
  { syscall: 'quotactl_fd', x86_64: 443, aarch64: 443, why: HOST },
  { syscall: 'lookup_dcookie', x86_64: 212, aarch64: 18, why: HOST },
  { syscall: 'nfsservctl', x86_64: 180, aarch64: 42, why: OBSOLETE },
  { syscall: 'sethostname', x86_64: 170, aarch64: 161, why: HOST },
  { syscall: 'setdomainname', x86_64: 171, aarch64: 162, why: HOST },
  { syscall: 'vhangup', x86_64: 153, aarch64: 58, why: HOST },
  { syscall: 'iopl', x86_64: 172, aarch64: null, why: `raw I/O ports: ${HOST}` },
  { syscall: 'ioperm', x86_64: 173, aarch64: null, why: `raw I/O ports: ${HOST}` },
  { syscall: 'fanotify_init', x86_64: 300, aarch64: 262, why: `watches the whole file system: ${HOST}` },
  {
    syscall: 'open_by_handle_at',
    x86_64: 304,
    aarch64: 265,
    why: 'opens a file by handle, around every mount and path check (the "shocker" container escape)',
  },
  { syscall: 'uselib', x86_64: 134, aarch64: null, why: OBSOLETE },
  { syscall: 'ustat', x86_64: 136, aarch64: null, why: OBSOLETE },
  { syscall: 'sysfs', x86_64: 139, aarch64: null, why: OBSOLETE },
  { syscall: '_sysctl', x86_64: 156, aarch64: null, why: OBSOLETE },
  { syscall: 'mbind', x86_64: 237, aarch64: 235, why: NUMA },
  { syscall: 'get_mempolicy', x86_64: 239, aarch64: 236, why: NUMA },
  { syscall: 'set_mempolicy', x86_64: 238, aarch64: 237, why: NUMA },
  { syscall: 'set_mempolicy_home_node', x86_64: 450, aarch64: 450, why: NUMA },
  { syscall: 'migrate_pages', x86_64: 256, aarch64: 238, why: NUMA },
  { syscall: 'move_pages', x86_64: 279, aarch64: 239, why: NUMA },

  // Arguments
  {
    syscall: 'personality',
    x86_64: 135,
    aarch64: 92,
    when: [{ arg: 0, noneOf: PERSONALITIES }],
    why: 'other execution domains, READ_IMPLIES_EXEC (every readable page executable) and ADDR_NO_RANDOMIZE (no ASLR) weaken the process against exploits; Docker allows only these values',
  },
  {
    syscall: 'socket',
    x86_64: 41,
    aarch64: 198,
    errno: 'EAFNOSUPPORT',
    when: [{ arg: 0, noneOf: [AF_UNIX, AF_INET, AF_INET6, AF_NETLINK] }],
    why: 'families other than Unix, IPv4, IPv6 and netlink (AF_PACKET, AF_VSOCK to the hypervisor, AF_KEY, AF_ALG, Bluetooth, …): kernel code no web app needs; the program sees the family as unsupported',
  },
  {
    syscall: 'socket',
    x86_64: 41,
    aarch64: 198,
    errno: 'EPROTONOSUPPORT',
    when: [
      { arg: 0, oneOf: [AF_NETLINK] },
      { arg: 2, noneOf: [NETLINK_ROUTE, NETLINK_SOCK_DIAG] },
    ],
    why: 'netlink other than routing (interfaces and addresses, as os.networkInterfaces() reads them) and socket diagnostics: netfilter (nf_tables), XFRM (IPsec), audit, uevents',
  },
];
