import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isIsolationError } from '@studio/isolation';
import { describe, expect, it } from 'vitest';
import { DOCKER_DEFAULT_CAPS } from './oci-spec.ts';
import { ociSeccomp, type SeccompProfile } from './seccomp-profile.ts';

const studio = JSON.parse(
  readFileSync(fileURLToPath(new URL('../../../infra/seccomp/studio.json', import.meta.url)), 'utf8'),
) as SeccompProfile;

const allowed = (filter: ReturnType<typeof ociSeccomp>, name: string) =>
  filter.syscalls.filter((r) => r.names.includes(name));

describe("ociSeccomp (the Docker backend's profile as runsc's OCI seccomp)", () => {
  const filter = ociSeccomp(studio);

  it('denies by default with EPERM, for x86_64 only', () => {
    expect(filter.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(filter.architectures).toEqual(['SCMP_ARCH_X86_64']);
  });

  it('allows nothing the profile does not allow to an amd64 process without capabilities', () => {
    for (const name of [
      'mount',
      'umount2',
      'unshare',
      'setns',
      'ptrace',
      'keyctl',
      'add_key',
      'request_key',
      'bpf',
      'init_module',
      'reboot',
      'chroot',
      'swapon',
      'open_by_handle_at',
      'perf_event_open',
      'kexec_load',
    ]) {
      expect(allowed(filter, name), name).toEqual([]);
    }
    // Rules for other architectures and capabilities are left out.
    expect(allowed(filter, 's390_runtime_instr')).toEqual([]);
    expect(allowed(filter, 'quotactl')).toEqual([]);
    expect(allowed(filter, 'arch_prctl')).toEqual([{ names: ['arch_prctl'], action: 'SCMP_ACT_ALLOW' }]);
  });

  it('keeps argument conditions: clone without namespace flags, sockets but AF_VSOCK, personality', () => {
    const clone = allowed(filter, 'clone');
    expect(clone).toHaveLength(1);
    expect(clone[0]?.args).toEqual([{ index: 0, value: 2114060288, op: 'SCMP_CMP_MASKED_EQ' }]);
    expect(allowed(filter, 'socket')[0]?.args).toEqual([{ index: 0, value: 40, op: 'SCMP_CMP_NE' }]);
    expect(allowed(filter, 'personality').map((r) => r.args?.[0]?.value)).toEqual([0, 4294967295]);
  });

  it("reads the profile for a template build's capabilities as Docker does: chroot, and nothing that reaches a kernel", () => {
    const build = ociSeccomp(studio, { caps: DOCKER_DEFAULT_CAPS });
    const added = build.syscalls.filter(
      (r) => !filter.syscalls.some((s) => JSON.stringify(s) === JSON.stringify(r)),
    );
    expect(added).toEqual([{ names: ['chroot'], action: 'SCMP_ACT_ALLOW' }]);
    for (const name of [
      'mount',
      'umount2',
      'unshare',
      'setns',
      'ptrace',
      'bpf',
      'keyctl',
      'init_module',
      'reboot',
    ]) {
      expect(allowed(build, name), name).toEqual([]);
    }
  });

  it('answers clone3 with ENOSYS (SCMP_ACT_TRACE: runsc ignores errnoRet) so glibc falls back to clone', () => {
    expect(allowed(filter, 'clone3')).toEqual([{ names: ['clone3'], action: 'SCMP_ACT_TRACE' }]);
  });

  it('refuses a profile that would let a tracer turn that ENOSYS into an allow', () => {
    const withPtrace: SeccompProfile = {
      ...studio,
      syscalls: [...studio.syscalls, { names: ['ptrace'], action: 'SCMP_ACT_ALLOW' }],
    };
    expect(() => ociSeccomp(withPtrace)).toThrow(/allows ptrace/);
  });

  it('refuses actions it does not know', () => {
    try {
      ociSeccomp({ defaultAction: 'SCMP_ACT_NOTIFY', syscalls: [] });
      expect.unreachable();
    } catch (error) {
      expect(isIsolationError(error, 'INVALID_INPUT')).toBe(true);
    }
  });
});
