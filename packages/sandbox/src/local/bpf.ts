/**
 * A small assembler for classic BPF, the language of seccomp filters: what bubblewrap's `--seccomp`
 * reads is an array of `struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }` in the machine's byte
 * order. Jumps name labels; assemble() turns them into the forward offsets the kernel wants (8 bits
 * for conditional jumps) and refuses any program the kernel would refuse, rather than let bubblewrap
 * fail on it at every command. Only what seccomp filters need is here.
 */

/** Opcodes (linux/bpf_common.h): a class, a size, a mode or an operation, a source. */
const BPF_LD_W_ABS = 0x00 | 0x00 | 0x20;
const BPF_JMP_JA = 0x05 | 0x00;
const BPF_JMP_JEQ_K = 0x05 | 0x10 | 0x00;
const BPF_JMP_JGE_K = 0x05 | 0x30 | 0x00;
const BPF_JMP_JSET_K = 0x05 | 0x40 | 0x00;
const BPF_RET_K = 0x06 | 0x00;

/** The kernel's limit on a program's length (BPF_MAXINSNS). */
export const MAX_INSTRUCTIONS = 4096;
/** sizeof(struct seccomp_data): what a load may read. */
const DATA_BYTES = 64;
const INSTRUCTION_BYTES = 8;

/** A conditional jump's targets (BPF's names: jump if true, jump if false): a label, or (left out) the next instruction. */
interface Targets {
  jt?: string;
  jf?: string;
}

export type Instruction =
  /** A = the 32-bit word at `offset` in struct seccomp_data. */
  | { op: 'ld'; offset: number }
  /** Jump to `jt` if A == k (jeq), A >= k (jge, unsigned), A & k != 0 (jset); else to `jf`. */
  | ({ op: 'jeq' | 'jge' | 'jset'; k: number } & Targets)
  /** Jump to a label, always. */
  | { op: 'ja'; to: string }
  /** End the program with this verdict. */
  | { op: 'ret'; k: number }
  /** Names the position of the next instruction. */
  | { op: 'label'; name: string };

const CONDITIONAL = { jeq: BPF_JMP_JEQ_K, jge: BPF_JMP_JGE_K, jset: BPF_JMP_JSET_K } as const;

function checkU32(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff)
    throw new Error(`bpf: ${what} ${value} is not an unsigned 32-bit integer`);
  return value;
}

/** The program as bytes for bubblewrap's `--seccomp` (little-endian, as on x86_64 and aarch64). */
export function assemble(program: readonly Instruction[]): Buffer {
  const labels = new Map<string, number>();
  let count = 0;
  for (const ins of program) {
    if (ins.op !== 'label') {
      count++;
      continue;
    }
    if (labels.has(ins.name)) throw new Error(`bpf: label "${ins.name}" is defined twice`);
    labels.set(ins.name, count);
  }
  if (count === 0) throw new Error('bpf: empty program');
  if (count > MAX_INSTRUCTIONS)
    throw new Error(`bpf: ${count} instructions, over the kernel's ${MAX_INSTRUCTIONS}`);

  const out = Buffer.alloc(count * INSTRUCTION_BYTES);
  let pc = 0;
  /** Offset from the instruction after pc to a label's: jumps only go forward. */
  const offset = (label: string | undefined, max: number): number => {
    if (label === undefined) return 0;
    const target = labels.get(label);
    if (target === undefined) throw new Error(`bpf: jump to undefined label "${label}"`);
    const distance = target - (pc + 1);
    if (distance < 0) throw new Error(`bpf: jump back to "${label}" (only forward jumps are allowed)`);
    if (target >= count) throw new Error(`bpf: label "${label}" is past the last instruction`);
    if (distance > max) throw new Error(`bpf: jump to "${label}" is ${distance} instructions, over ${max}`);
    return distance;
  };
  const emit = (code: number, jt: number, jf: number, k: number) => {
    const at = pc * INSTRUCTION_BYTES;
    out.writeUInt16LE(code, at);
    out.writeUInt8(jt, at + 2);
    out.writeUInt8(jf, at + 3);
    out.writeUInt32LE(k, at + 4);
    pc++;
  };
  let last: Instruction | undefined;
  for (const ins of program) {
    switch (ins.op) {
      case 'label':
        continue;
      case 'ld':
        if (
          !Number.isInteger(ins.offset) ||
          ins.offset < 0 ||
          ins.offset % 4 !== 0 ||
          ins.offset >= DATA_BYTES
        )
          throw new Error(`bpf: cannot load a word at offset ${ins.offset} of seccomp_data`);
        emit(BPF_LD_W_ABS, 0, 0, ins.offset);
        break;
      case 'jeq':
      case 'jge':
      case 'jset':
        emit(CONDITIONAL[ins.op], offset(ins.jt, 255), offset(ins.jf, 255), checkU32(ins.k, ins.op));
        break;
      case 'ja':
        emit(BPF_JMP_JA, 0, 0, offset(ins.to, 0xffffffff));
        break;
      case 'ret':
        emit(BPF_RET_K, 0, 0, checkU32(ins.k, 'ret'));
        break;
      default:
        throw new Error(`bpf: unknown instruction ${JSON.stringify(ins)}`);
    }
    last = ins;
  }
  // The kernel refuses a program that can run off its end.
  if (last?.op !== 'ret') throw new Error('bpf: the program must end with ret');
  return out;
}
