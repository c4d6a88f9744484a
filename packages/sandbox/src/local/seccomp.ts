/**
 * The seccomp filter of every isolated command: seccomp-policy.ts's table compiled to classic BPF
 * (see bpf.ts) for this machine's architecture, handed to bubblewrap with `--seccomp <fd>`.
 *
 * The program: a call from another ABI (32-bit x86 or arm through the compat entry, x32) kills the
 * process, since the table's numbers would not mean the same calls there; then each denial with
 * conditions on its arguments, each checked on its own; then the unconditional denials, one jump
 * each; anything else is allowed. Calls that no row names are allowed whatever their arguments, so
 * the kernel's seccomp cache lets them through without running the filter at all.
 */
import os from 'node:os';
import { assemble, type Instruction } from './bpf';
import { ARCHES, type Arch, type Condition, DENIALS, type Denial, ERRNO, type Errno } from './seccomp-policy';

/** The file descriptor on which bubblewrap reads the filter (after the gate's 3 and the env's 4). */
export const SECCOMP_FD = 5;

export const SECCOMP_RET_KILL_PROCESS = 0x80000000;
export const SECCOMP_RET_ERRNO = 0x00050000;
export const SECCOMP_RET_ALLOW = 0x7fff0000;
/** x32 system calls are x86_64's numbers with this bit set. */
const X32_SYSCALL_BIT = 0x40000000;

/** Offsets in struct seccomp_data: nr, arch, then ip and the six 64-bit arguments. */
const NR = 0;
const ARCH = 4;
/** The low 32 bits of an argument (little-endian). */
const argLow = (index: number) => 16 + 8 * index;

/** The architecture the table knows by this Node's name for it, or null. */
export function seccompArch(node: string = process.arch): Arch | null {
  for (const [arch, info] of Object.entries(ARCHES)) if (info.node === node) return arch as Arch;
  return null;
}

/** The program for one architecture, as instructions (exported for the tests). */
export function filterProgram(arch: Arch, denials: readonly Denial[] = DENIALS): Instruction[] {
  const deny = (errno: Errno | undefined) => SECCOMP_RET_ERRNO | ERRNO[errno ?? 'EPERM'];
  const p: Instruction[] = [
    { op: 'ld', offset: ARCH },
    { op: 'jeq', k: ARCHES[arch].audit, jt: 'arch-ok' },
    { op: 'ret', k: SECCOMP_RET_KILL_PROCESS },
    { op: 'label', name: 'arch-ok' },
    { op: 'ld', offset: NR },
  ];
  if (ARCHES[arch].x32)
    p.push(
      { op: 'jge', k: X32_SYSCALL_BIT, jf: 'native' },
      { op: 'ret', k: SECCOMP_RET_KILL_PROCESS },
      { op: 'label', name: 'native' },
    );
  const rows = denials.filter((d) => d[arch] !== null);
  // Each conditional denial: not this call, or a condition unmet → on to the next row (A = nr again).
  for (const [i, d] of rows.entries()) {
    if (!d.when?.length) continue;
    const next = `next-${i}`;
    const unmet = `unmet-${i}`;
    p.push({ op: 'jeq', k: d[arch]!, jf: next });
    for (const [j, c] of d.when.entries()) p.push(...condition(c, unmet, `met-${i}-${j}`));
    p.push({ op: 'ret', k: deny(d.errno) }, { op: 'label', name: unmet }, { op: 'ld', offset: NR });
    p.push({ op: 'label', name: next });
  }
  const errnos = new Set<Errno>();
  for (const d of rows) {
    if (d.when?.length) continue;
    const errno = d.errno ?? 'EPERM';
    errnos.add(errno);
    p.push({ op: 'jeq', k: d[arch]!, jt: `deny-${errno}` });
  }
  p.push({ op: 'ret', k: SECCOMP_RET_ALLOW });
  for (const errno of errnos) p.push({ op: 'label', name: `deny-${errno}` }, { op: 'ret', k: deny(errno) });
  return p;
}

/** Falls through when the condition holds; jumps to `unmet` when it does not. */
function condition(c: Condition, unmet: string, met: string): Instruction[] {
  const load: Instruction = { op: 'ld', offset: argLow(c.arg) };
  if (!Number.isInteger(c.arg) || c.arg < 0 || c.arg > 5) throw new Error(`seccomp: no argument ${c.arg}`);
  if ('anyBitOf' in c) return [load, { op: 'jset', k: c.anyBitOf, jf: unmet }];
  if ('noneOf' in c) return [load, ...c.noneOf.map((k): Instruction => ({ op: 'jeq', k, jt: unmet }))];
  if (c.oneOf.length === 0) throw new Error('seccomp: oneOf needs a value');
  return [
    load,
    ...c.oneOf.slice(0, -1).map((k): Instruction => ({ op: 'jeq', k, jt: met })),
    { op: 'jeq', k: c.oneOf.at(-1)!, jf: unmet },
    { op: 'label', name: met },
  ];
}

let compiled: Buffer | null | undefined;

/**
 * The filter for this machine, compiled once; null where the table has no numbers for its
 * architecture (isolation then says so, see detectIsolation).
 */
export function seccompFilter(): Buffer | null {
  if (compiled !== undefined) return compiled;
  const arch = seccompArch();
  compiled = arch && os.endianness() === 'LE' ? assemble(filterProgram(arch)) : null;
  return compiled;
}
