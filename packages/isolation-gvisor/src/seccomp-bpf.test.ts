import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { compileSeccompProfile, type SeccompProfile } from './seccomp-bpf.ts';
import { SYSCALLS_X86_64 as NR } from './syscalls-x86_64.ts';

const AUDIT_ARCH_X86_64 = 0xc000003e;
const AUDIT_ARCH_I386 = 0x40000003;
const ALLOW = 0x7fff0000;
const KILL_PROCESS = 0x80000000;
const errno = (n: number) => 0x00050000 | n;

/** A classic-BPF interpreter for the instructions the compiler emits, run over one struct seccomp_data. */
function run(program: Buffer, nr: number, args: readonly bigint[] = [], arch = AUDIT_ARCH_X86_64): number {
  const data = Buffer.alloc(64);
  data.writeUInt32LE(nr >>> 0, 0);
  data.writeUInt32LE(arch >>> 0, 4);
  for (const [i, arg] of args.entries()) data.writeBigUInt64LE(arg, 16 + 8 * i);
  let a = 0;
  let pc = 0;
  for (let steps = 0; steps < 100_000; steps++) {
    const code = program.readUInt16LE(pc * 8);
    const jt = program.readUInt8(pc * 8 + 2);
    const jf = program.readUInt8(pc * 8 + 3);
    const k = program.readUInt32LE(pc * 8 + 4);
    pc++;
    switch (code) {
      case 0x20:
        a = data.readUInt32LE(k);
        break;
      case 0x54:
        a = (a & k) >>> 0;
        break;
      case 0x05:
        pc += k;
        break;
      case 0x15:
        pc += a === k ? jt : jf;
        break;
      case 0x25:
        pc += a > k ? jt : jf;
        break;
      case 0x35:
        pc += a >= k ? jt : jf;
        break;
      case 0x06:
        return k;
      default:
        throw new Error(`unexpected opcode ${code.toString(16)} at ${pc - 1}`);
    }
    if (pc * 8 >= program.length) throw new Error('ran off the end of the program');
  }
  throw new Error('no return');
}

const studio = JSON.parse(
  readFileSync(fileURLToPath(new URL('../../../infra/seccomp/studio.json', import.meta.url)), 'utf8'),
) as SeccompProfile;
const program = compileSeccompProfile(studio);
const nr = (name: string): number => {
  const n = NR[name];
  if (n === undefined) throw new Error(`unknown syscall ${name}`);
  return n;
};

describe('compileSeccompProfile (infra/seccomp/studio.json for gVisor sandboxes)', () => {
  it('fits the kernel limit and dispatches in few steps', () => {
    expect(program.length % 8).toBe(0);
    expect(program.length / 8).toBeLessThan(4096);
  });

  it('allows what ordinary programs need', () => {
    for (const name of [
      'read',
      'write',
      'openat',
      'mmap',
      'execve',
      'wait4',
      'statx',
      'newfstatat',
      'epoll_wait',
      'prctl',
    ]) {
      expect(run(program, nr(name)), name).toBe(ALLOW);
    }
  });

  it('refuses what SECURITY.md §1 takes away, with EPERM', () => {
    for (const name of [
      'unshare',
      'setns',
      'mount',
      'umount2',
      'pivot_root',
      'ptrace',
      'process_vm_readv',
      'keyctl',
      'add_key',
      'request_key',
      'bpf',
      'perf_event_open',
      'io_uring_setup',
      'open_by_handle_at',
      'name_to_handle_at',
      'init_module',
      'reboot',
      'kexec_load',
    ]) {
      expect(run(program, nr(name)), name).toBe(errno(1));
    }
  });

  it('honours errnoRet: clone3 answers ENOSYS so glibc falls back to clone', () => {
    expect(run(program, nr('clone3'))).toBe(errno(38));
  });

  it('checks arguments: clone without namespace flags, socket families, personality', () => {
    const CLONE_THREAD_FLAGS = 0x3d0f00n; // what pthread_create passes
    expect(run(program, nr('clone'), [CLONE_THREAD_FLAGS])).toBe(ALLOW);
    expect(run(program, nr('clone'), [0x11n])).toBe(ALLOW); // fork: SIGCHLD
    expect(run(program, nr('clone'), [0x10000000n | 0x11n])).toBe(errno(1)); // CLONE_NEWUSER
    expect(run(program, nr('clone'), [0x20000n])).toBe(errno(1)); // CLONE_NEWNS
    expect(run(program, nr('socket'), [2n])).toBe(ALLOW); // AF_INET
    expect(run(program, nr('socket'), [40n])).toBe(errno(1)); // AF_VSOCK
    expect(run(program, nr('socket'), [(1n << 32n) | 40n])).toBe(ALLOW); // the full 64-bit value is compared
    expect(run(program, nr('personality'), [0n])).toBe(ALLOW);
    expect(run(program, nr('personality'), [0xffffffffn])).toBe(ALLOW);
    expect(run(program, nr('personality'), [8n])).toBe(errno(1)); // PER_LINUX32
  });

  it('kills other architectures and the x32 ABI', () => {
    expect(run(program, 1, [], AUDIT_ARCH_I386)).toBe(KILL_PROCESS);
    expect(run(program, 0x40000000 + 1)).toBe(KILL_PROCESS);
  });

  it('gives the default action to numbers it does not know', () => {
    expect(run(program, 1000)).toBe(errno(1));
    expect(run(program, 0x3fffffff)).toBe(errno(1));
  });

  it('implements every comparison operator over 64 bits', () => {
    const profile: SeccompProfile = {
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [
        {
          names: ['read'],
          action: 'SCMP_ACT_ERRNO',
          errnoRet: 11,
          args: [{ index: 0, value: 2 ** 32 + 5, op: 'SCMP_CMP_GT' }],
        },
        {
          names: ['write'],
          action: 'SCMP_ACT_ERRNO',
          errnoRet: 12,
          args: [{ index: 1, value: 7, op: 'SCMP_CMP_GE' }],
        },
        {
          names: ['open'],
          action: 'SCMP_ACT_ERRNO',
          errnoRet: 13,
          args: [{ index: 2, value: 7, op: 'SCMP_CMP_LT' }],
        },
        {
          names: ['close'],
          action: 'SCMP_ACT_ERRNO',
          errnoRet: 14,
          args: [{ index: 5, value: 7, op: 'SCMP_CMP_LE' }],
        },
        {
          names: ['stat'],
          action: 'SCMP_ACT_ERRNO',
          errnoRet: 15,
          args: [
            { index: 0, value: 0xff, valueTwo: 0x0f, op: 'SCMP_CMP_MASKED_EQ' },
            { index: 1, value: 3, op: 'SCMP_CMP_EQ' },
          ],
        },
        { names: ['no_such_call'], action: 'SCMP_ACT_KILL' },
        { names: ['fstat'], action: 'SCMP_ACT_KILL', includes: { caps: ['CAP_SYS_ADMIN'] } },
        { names: ['lstat'], action: 'SCMP_ACT_KILL', excludes: { arches: ['amd64'] } },
      ],
    };
    const p = compileSeccompProfile(profile);
    expect(run(p, nr('read'), [2n ** 32n + 6n])).toBe(errno(11));
    expect(run(p, nr('read'), [2n ** 32n + 5n])).toBe(ALLOW);
    expect(run(p, nr('read'), [6n])).toBe(ALLOW);
    expect(run(p, nr('read'), [2n ** 33n])).toBe(errno(11));
    expect(run(p, nr('write'), [0n, 7n])).toBe(errno(12));
    expect(run(p, nr('write'), [0n, 6n])).toBe(ALLOW);
    expect(run(p, nr('open'), [0n, 0n, 6n])).toBe(errno(13));
    expect(run(p, nr('open'), [0n, 0n, 7n])).toBe(ALLOW);
    expect(run(p, nr('open'), [0n, 0n, 2n ** 32n])).toBe(ALLOW);
    expect(run(p, nr('close'), [0n, 0n, 0n, 0n, 0n, 7n])).toBe(errno(14));
    expect(run(p, nr('close'), [0n, 0n, 0n, 0n, 0n, 8n])).toBe(ALLOW);
    expect(run(p, nr('stat'), [0x1f0fn, 3n])).toBe(errno(15));
    expect(run(p, nr('stat'), [0x1f0en, 3n])).toBe(ALLOW);
    expect(run(p, nr('stat'), [0x1f0fn, 4n])).toBe(ALLOW);
    expect(run(p, nr('fstat'))).toBe(ALLOW); // needs a capability sandboxes never hold
    expect(run(p, nr('lstat'))).toBe(ALLOW); // excluded on amd64
  });

  it('refuses profiles it cannot express faithfully', () => {
    expect(() => compileSeccompProfile({ defaultAction: 'SCMP_ACT_NOTIFY', syscalls: [] })).toThrow(
      /unknown action/,
    );
    expect(() =>
      compileSeccompProfile({
        defaultAction: 'SCMP_ACT_ALLOW',
        syscalls: [
          { names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 1, op: 'SCMP_CMP_WHAT' }] },
        ],
      }),
    ).toThrow(/unknown operator/);
    expect(() =>
      compileSeccompProfile({
        defaultAction: 'SCMP_ACT_ALLOW',
        syscalls: [
          {
            names: ['read'],
            action: 'SCMP_ACT_ERRNO',
            args: [
              { index: 0, value: 1, op: 'SCMP_CMP_EQ' },
              { index: 0, value: 2, op: 'SCMP_CMP_EQ' },
            ],
          },
        ],
      }),
    ).toThrow(/two conditions/);
  });
});
