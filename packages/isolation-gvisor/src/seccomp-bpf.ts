import { IsolationError } from '@studio/isolation';
import { SYSCALLS_X86_64 } from './syscalls-x86_64.ts';

/** One condition on a syscall argument, as Docker's (and OCI's) seccomp profiles write it. */
export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: string;
}

/** A rule of a Docker-format seccomp profile (`infra/seccomp/studio.json`). */
export interface SeccompRule {
  names: string[];
  action: string;
  args?: SeccompArg[] | null;
  errnoRet?: number | null;
  includes?: { arches?: string[] | null; caps?: string[] | null; minKernel?: string | null } | null;
  excludes?: { arches?: string[] | null; caps?: string[] | null; minKernel?: string | null } | null;
}

/** A Docker-format seccomp profile. */
export interface SeccompProfile {
  defaultAction: string;
  defaultErrnoRet?: number | null;
  syscalls: SeccompRule[];
}

// struct seccomp_data: nr at 0, arch at 4, instruction_pointer at 8, args[6] (u64) at 16.
const OFF_NR = 0;
const OFF_ARCH = 4;
const argLow = (i: number) => 16 + 8 * i; // little-endian: low word first
const argHigh = (i: number) => 16 + 8 * i + 4;

const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_SYSCALL_BIT = 0x40000000;
const EPERM = 1;

const RET_KILL_PROCESS = 0x80000000;
const RET_KILL_THREAD = 0x00000000;
const RET_TRAP = 0x00030000;
const RET_ERRNO = 0x00050000;
const RET_TRACE = 0x7ff00000;
const RET_LOG = 0x7ffc0000;
const RET_ALLOW = 0x7fff0000;

// Classic BPF opcodes.
const LD_W_ABS = 0x20;
const ALU_AND_K = 0x54;
const JMP_JA = 0x05;
const JMP_JEQ_K = 0x15;
const JMP_JGT_K = 0x25;
const JMP_JGE_K = 0x35;
const RET_K = 0x06;

/** Capabilities and architecture the filter is compiled for: Studio sandboxes hold no capability. */
const ARCH = 'amd64';
const CAPS: readonly string[] = [];

type Label = { readonly label: number };
type Insn =
  | { kind: 'plain'; code: number; k: number }
  | { kind: 'cond'; code: number; k: number; onTrue: Label; onFalse: Label }
  | { kind: 'jump'; to: Label }
  | { kind: 'mark'; label: Label };

/** A tiny assembler: conditional jumps take labels, and are emitted with long `ja`s so any distance works. */
class Assembler {
  readonly #insns: Insn[] = [];
  #labels = 0;

  label(): Label {
    return { label: this.#labels++ };
  }
  mark(label: Label): void {
    this.#insns.push({ kind: 'mark', label });
  }
  load(offset: number): void {
    this.#insns.push({ kind: 'plain', code: LD_W_ABS, k: offset });
  }
  and(mask: number): void {
    this.#insns.push({ kind: 'plain', code: ALU_AND_K, k: mask >>> 0 });
  }
  ret(value: number): void {
    this.#insns.push({ kind: 'plain', code: RET_K, k: value >>> 0 });
  }
  jump(to: Label): void {
    this.#insns.push({ kind: 'jump', to });
  }
  /** if (A <op> k) goto onTrue else goto onFalse. */
  branch(code: number, k: number, onTrue: Label, onFalse: Label): void {
    this.#insns.push({ kind: 'cond', code, k: k >>> 0, onTrue, onFalse });
  }

  /** Resolves labels: a `cond` becomes `jcond k, 0, 1; ja onTrue; ja onFalse`. */
  assemble(): Buffer {
    const positions = new Map<number, number>();
    let pc = 0;
    for (const insn of this.#insns) {
      if (insn.kind === 'mark') positions.set(insn.label.label, pc);
      else pc += insn.kind === 'cond' ? 3 : 1;
    }
    if (pc > 4096) throw new IsolationError('INTERNAL', `seccomp filter too long (${pc} instructions)`);
    const out = Buffer.alloc(pc * 8);
    let at = 0;
    const put = (code: number, jt: number, jf: number, k: number) => {
      out.writeUInt16LE(code, at * 8);
      out.writeUInt8(jt, at * 8 + 2);
      out.writeUInt8(jf, at * 8 + 3);
      out.writeUInt32LE(k >>> 0, at * 8 + 4);
      at++;
    };
    const target = (label: Label) => {
      const p = positions.get(label.label);
      if (p === undefined) throw new IsolationError('INTERNAL', 'seccomp assembler: unplaced label');
      const offset = p - (at + 1);
      if (offset < 0) throw new IsolationError('INTERNAL', 'seccomp assembler: backward jump');
      return offset;
    };
    for (const insn of this.#insns) {
      if (insn.kind === 'mark') continue;
      if (insn.kind === 'plain') put(insn.code, 0, 0, insn.k);
      else if (insn.kind === 'jump') put(JMP_JA, 0, 0, target(insn.to));
      else {
        put(insn.code, 0, 1, insn.k);
        put(JMP_JA, 0, 0, target(insn.onTrue));
        put(JMP_JA, 0, 0, target(insn.onFalse));
      }
    }
    return out;
  }
}

function actionValue(action: string, errnoRet: number | null | undefined, defaultErrno: number): number {
  const errno = (errnoRet ?? defaultErrno) & 0xffff;
  switch (action) {
    case 'SCMP_ACT_ALLOW':
      return RET_ALLOW;
    case 'SCMP_ACT_ERRNO':
      return RET_ERRNO | errno;
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return RET_KILL_THREAD;
    case 'SCMP_ACT_KILL_PROCESS':
      return RET_KILL_PROCESS;
    case 'SCMP_ACT_TRAP':
      return RET_TRAP;
    case 'SCMP_ACT_TRACE':
      return RET_TRACE | errno;
    case 'SCMP_ACT_LOG':
      return RET_LOG;
    default:
      throw new IsolationError('INVALID_INPUT', `seccomp profile: unknown action ${action}`);
  }
}

/** Whether a Docker profile rule applies to an amd64 process without capabilities (Docker's own logic). */
function applies(rule: SeccompRule): boolean {
  const inc = rule.includes ?? {};
  const exc = rule.excludes ?? {};
  if (inc.arches?.length && !inc.arches.includes(ARCH)) return false;
  if (inc.caps?.length && !inc.caps.every((c) => CAPS.includes(c))) return false;
  if (exc.arches?.length && exc.arches.includes(ARCH)) return false;
  if (exc.caps?.length && exc.caps.some((c) => CAPS.includes(c))) return false;
  // minKernel guards host-kernel seccomp bugs (the pre-4.8 ptrace bypass); gVisor's kernel has none of them.
  return true;
}

interface Compiled {
  /** Conditions (all must hold) and the action when they do. */
  rules: Array<{ args: SeccompArg[]; value: number }>;
}

const hi = (n: number) => Math.floor(n / 2 ** 32) >>> 0;
const lo = (n: number) => n >>> 0;

/** Emits the test of one 64-bit argument condition: jumps to `pass` or `fail`. */
function emitCondition(asm: Assembler, arg: SeccompArg, pass: Label, fail: Label): void {
  const i = arg.index;
  const v = arg.value;
  const v2 = arg.valueTwo ?? 0;
  if (!Number.isSafeInteger(v) || v < 0 || !Number.isSafeInteger(v2) || v2 < 0) {
    throw new IsolationError(
      'INVALID_INPUT',
      `seccomp profile: argument value ${v} is not a safe unsigned integer`,
    );
  }
  if (!Number.isInteger(i) || i < 0 || i > 5) {
    throw new IsolationError('INVALID_INPUT', `seccomp profile: argument index ${i} out of range`);
  }
  const checkLow = asm.label();
  switch (arg.op) {
    case 'SCMP_CMP_EQ':
    case 'SCMP_CMP_NE': {
      const [yes, no] = arg.op === 'SCMP_CMP_EQ' ? [pass, fail] : [fail, pass];
      asm.load(argHigh(i));
      asm.branch(JMP_JEQ_K, hi(v), checkLow, no);
      asm.mark(checkLow);
      asm.load(argLow(i));
      asm.branch(JMP_JEQ_K, lo(v), yes, no);
      return;
    }
    case 'SCMP_CMP_MASKED_EQ': {
      // (arg & value) == valueTwo
      asm.load(argHigh(i));
      asm.and(hi(v));
      asm.branch(JMP_JEQ_K, hi(v2), checkLow, fail);
      asm.mark(checkLow);
      asm.load(argLow(i));
      asm.and(lo(v));
      asm.branch(JMP_JEQ_K, lo(v2), pass, fail);
      return;
    }
    case 'SCMP_CMP_GT':
    case 'SCMP_CMP_GE':
    case 'SCMP_CMP_LT':
    case 'SCMP_CMP_LE': {
      // a > v  <=>  hi(a) > hi(v) || (hi(a) == hi(v) && lo(a) > lo(v)); LT/LE are the negations of GE/GT.
      const strict = arg.op === 'SCMP_CMP_GT' || arg.op === 'SCMP_CMP_LE';
      const [yes, no] = arg.op === 'SCMP_CMP_GT' || arg.op === 'SCMP_CMP_GE' ? [pass, fail] : [fail, pass];
      const equalHigh = asm.label();
      asm.load(argHigh(i));
      asm.branch(JMP_JGT_K, hi(v), yes, equalHigh);
      asm.mark(equalHigh);
      asm.branch(JMP_JEQ_K, hi(v), checkLow, no);
      asm.mark(checkLow);
      asm.load(argLow(i));
      asm.branch(strict ? JMP_JGT_K : JMP_JGE_K, lo(v), yes, no);
      return;
    }
    default:
      throw new IsolationError('INVALID_INPUT', `seccomp profile: unknown operator ${arg.op}`);
  }
}

/**
 * Compiles a Docker-format seccomp profile into a classic BPF program for x86_64 processes without
 * capabilities, the way Docker and runc (libseccomp) read it: rules whose `includes`/`excludes` do not
 * fit are dropped, unknown syscall names are skipped, conditions of one rule must all hold, a syscall
 * with no matching rule gets the default action, and `errnoRet` is honoured (so `clone3` answers
 * ENOSYS and glibc falls back to `clone`). Any other architecture, and the x32 ABI, kill the process.
 *
 * Syscall numbers are dispatched by a binary search over ranges, so a call costs a few comparisons.
 */
export function compileSeccompProfile(profile: SeccompProfile): Buffer {
  const defaultErrno = profile.defaultErrnoRet ?? EPERM;
  const defaultValue = actionValue(profile.defaultAction, profile.defaultErrnoRet, EPERM);
  const bySyscall = new Map<number, Compiled>();
  for (const rule of profile.syscalls) {
    if (!applies(rule)) continue;
    const value = actionValue(rule.action, rule.errnoRet, defaultErrno);
    const args = rule.args ?? [];
    const indexes = new Set(args.map((a) => a.index));
    if (indexes.size !== args.length) {
      throw new IsolationError(
        'INVALID_INPUT',
        `seccomp profile: two conditions on one argument of ${rule.names.join(',')}`,
      );
    }
    for (const name of rule.names) {
      const nr = SYSCALLS_X86_64[name];
      if (nr === undefined) continue;
      const entry = bySyscall.get(nr) ?? { rules: [] };
      entry.rules.push({ args, value });
      bySyscall.set(nr, entry);
    }
  }
  // Unconditional rules decide at once; the most restrictive matching action wins, as in libseccomp.
  for (const entry of bySyscall.values())
    entry.rules.sort((a, b) => restrictiveness(b.value) - restrictiveness(a.value));

  const asm = new Assembler();
  const kill = asm.label();
  const deny = asm.label();
  const checkNr = asm.label();
  const dispatch = asm.label();
  asm.load(OFF_ARCH);
  asm.branch(JMP_JEQ_K, AUDIT_ARCH_X86_64, checkNr, kill);
  asm.mark(checkNr);
  asm.load(OFF_NR);
  asm.branch(JMP_JGE_K, X32_SYSCALL_BIT, kill, dispatch);
  asm.mark(dispatch);

  // Ranges of consecutive syscall numbers with the same simple outcome, or one syscall with conditions.
  type Leaf = { from: number; to: number; value?: number; nr?: number };
  const leaves: Leaf[] = [];
  const simple = (nr: number): number | undefined => {
    const entry = bySyscall.get(nr);
    if (entry === undefined) return defaultValue;
    const first = entry.rules[0];
    return entry.rules.length === 1 && first && first.args.length === 0 ? first.value : undefined;
  };
  const maxNr = Math.max(0, ...bySyscall.keys());
  for (let nr = 0; nr <= maxNr + 1; nr++) {
    const value = nr > maxNr ? defaultValue : simple(nr);
    const last = leaves[leaves.length - 1];
    if (value !== undefined && last && last.value === value && last.to === nr - 1) last.to = nr;
    else leaves.push(value === undefined ? { from: nr, to: nr, nr } : { from: nr, to: nr, value });
  }
  const tail = leaves[leaves.length - 1];
  if (tail) tail.to = X32_SYSCALL_BIT - 1;

  const blocks: Array<{ label: Label; nr: number }> = [];
  const emitTree = (from: number, to: number): void => {
    if (from === to) {
      const leaf = leaves[from];
      if (!leaf) throw new IsolationError('INTERNAL', 'seccomp compiler: empty leaf');
      if (leaf.nr !== undefined) {
        const label = asm.label();
        blocks.push({ label, nr: leaf.nr });
        asm.jump(label);
      } else if (leaf.value === defaultValue) {
        asm.jump(deny);
      } else {
        asm.ret(leaf.value ?? defaultValue);
      }
      return;
    }
    const mid = Math.floor((from + to + 1) / 2);
    const pivot = leaves[mid];
    if (!pivot) throw new IsolationError('INTERNAL', 'seccomp compiler: empty pivot');
    const right = asm.label();
    const left = asm.label();
    asm.branch(JMP_JGE_K, pivot.from, right, left);
    asm.mark(left);
    emitTree(from, mid - 1);
    asm.mark(right);
    emitTree(mid, to);
  };
  emitTree(0, leaves.length - 1);

  for (const { label, nr } of blocks) {
    asm.mark(label);
    for (const rule of bySyscall.get(nr)?.rules ?? []) {
      const next = asm.label();
      for (const arg of rule.args) {
        const pass = asm.label();
        emitCondition(asm, arg, pass, next);
        asm.mark(pass);
      }
      asm.ret(rule.value);
      asm.mark(next);
    }
    asm.jump(deny);
  }
  asm.mark(deny);
  asm.ret(defaultValue);
  asm.mark(kill);
  asm.ret(RET_KILL_PROCESS);
  return asm.assemble();
}

/** Higher is more restrictive (libseccomp's precedence: kill > trap > errno > trace > log > allow). */
function restrictiveness(value: number): number {
  const action = (value & 0xffff0000) >>> 0;
  switch (action) {
    case RET_KILL_PROCESS:
      return 6;
    case RET_KILL_THREAD:
      return 5;
    case RET_TRAP:
      return 4;
    case RET_ERRNO:
      return 3;
    case RET_TRACE:
      return 2;
    case RET_LOG:
      return 1;
    default:
      return 0;
  }
}
