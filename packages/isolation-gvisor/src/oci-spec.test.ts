import { describe, expect, it } from 'vitest';
import {
  CPU_QUOTA_ANNOTATION,
  cpuQuotaOf,
  HOST_PIDS_BASE,
  HOST_PIDS_PER_TASK,
  hostPidsLimit,
  LABEL_ANNOTATION_PREFIX,
  labelsOf,
  ociSpec,
} from './oci-spec.ts';
import type { OciSeccomp } from './seccomp-profile.ts';

const resources = {
  memoryBytes: 1024 ** 3,
  cpus: 1.5,
  pids: 256,
  diskBytes: 2 * 1024 ** 3,
  inodes: 100_000,
  tmpBytes: 64 * 1024 ** 2,
};
const AGENT = ['/opt/studio/studio-agent'];
const SECCOMP: OciSeccomp = {
  defaultAction: 'SCMP_ACT_ERRNO',
  architectures: ['SCMP_ARCH_X86_64'],
  syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }],
};
const spec = ociSpec({
  rootfs: '/data/sandboxes/sbx-0000000000000000/rootfs',
  workspace: '/data/workspaces/sbx-0000000000000000',
  agentDir: '/opt/agent',
  command: AGENT,
  seccomp: SECCOMP,
  resources,
  cgroupsPath: '/studio-gvisor/sbx-0000000000000000',
  labels: {
    'studio.managed': 'true',
    'io.kubernetes.cri.container-type': 'container',
    'dev.gvisor.flag.network': 'host',
  },
});

// The live attacks are in the conformance suite; this pins the settings so a refactor cannot drop one silently.
describe('ociSpec (SECURITY.md §1)', () => {
  it('runs the agent as PID 1, as 1000:1000 with no capabilities, no new privileges, under seccomp', () => {
    const p = spec.process;
    expect(p.user).toEqual({ uid: 1000, gid: 1000, additionalGids: [] });
    expect(p.capabilities).toEqual({
      bounding: [],
      effective: [],
      inheritable: [],
      permitted: [],
      ambient: [],
    });
    expect(p.noNewPrivileges).toBe(true);
    expect(p.terminal).toBe(false);
    expect(p.cwd).toBe('/workspace');
    expect(p.args).toEqual(AGENT);
    expect(spec.linux.seccomp).toEqual(SECCOMP);
    expect(p.env).toContain('HOME=/tmp/home');
    expect(p.env).toContain('STUDIO_WORKSPACE=/workspace');
    expect(p.env.some((e) => e.startsWith('LD_'))).toBe(false);
  });

  it('caps files, core dumps and tasks with rlimits (RLIMIT_NPROC is per sandbox in gVisor)', () => {
    expect(spec.process.rlimits).toEqual([
      { type: 'RLIMIT_NOFILE', hard: 4096, soft: 4096 },
      { type: 'RLIMIT_CORE', hard: 0, soft: 0 },
      { type: 'RLIMIT_NPROC', hard: 256, soft: 256 },
    ]);
  });

  it('has a read-only root and mounts only proc, dev, sys, a sized /tmp, the workspace and the read-only agent', () => {
    expect(spec.root).toEqual({ path: '/data/sandboxes/sbx-0000000000000000/rootfs', readonly: true });
    expect(spec.mounts.map((m) => m.destination)).toEqual([
      '/proc',
      '/dev',
      '/sys',
      '/tmp',
      '/workspace',
      '/opt/studio',
    ]);
    const by = Object.fromEntries(spec.mounts.map((m) => [m.destination, m]));
    expect(by['/sys']?.options).toContain('ro');
    expect(by['/tmp']).toEqual({
      destination: '/tmp',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'nodev', `size=${64 * 1024 ** 2}`, 'mode=1777'],
    });
    expect(by['/workspace']).toEqual({
      destination: '/workspace',
      type: 'bind',
      source: '/data/workspaces/sbx-0000000000000000',
      options: ['rbind', 'rw', 'nosuid', 'nodev'],
    });
    expect(by['/opt/studio']).toEqual({
      destination: '/opt/studio',
      type: 'bind',
      source: '/opt/agent',
      options: ['rbind', 'ro', 'nosuid', 'nodev'],
    });
    // Only the workspace and the agent come from the host.
    expect(spec.mounts.filter((m) => m.type === 'bind').map((m) => m.source)).toEqual([
      '/data/workspaces/sbx-0000000000000000',
      '/opt/agent',
    ]);
  });

  it('creates every namespace anew and joins none of the host’s', () => {
    expect(spec.linux.namespaces.map((n) => n.type).sort()).toEqual([
      'ipc',
      'mount',
      'network',
      'pid',
      'uts',
    ]);
    expect(spec.linux.namespaces.every((n) => n.path === undefined)).toBe(true);
  });

  it('caps memory with swap equal to memory, CPU by quota and host pids with headroom for gVisor’s own threads', () => {
    expect(spec.linux.resources.memory).toEqual({ limit: 1024 ** 3, swap: 1024 ** 3 });
    // The CPU quota waits in an annotation for the backend to apply once runsc booted (its boot is faster
    // unthrottled); an older spec with it in linux.resources is left to runsc.
    expect(spec.linux.resources.cpu).toBeUndefined();
    expect(spec.annotations[CPU_QUOTA_ANNOTATION]).toBe('150000 100000');
    expect(cpuQuotaOf(spec)).toEqual({ quota: 150_000, period: 100_000 });
    const older = {
      ...spec,
      linux: { ...spec.linux, resources: { ...spec.linux.resources, cpu: { quota: 1, period: 2 } } },
    };
    expect(cpuQuotaOf(older)).toBeUndefined();
    expect(spec.linux.resources.pids.limit).toBe(hostPidsLimit(256));
    expect(hostPidsLimit(256)).toBe(HOST_PIDS_BASE + HOST_PIDS_PER_TASK * 256);
    expect(hostPidsLimit(128)).toBeGreaterThan(2_100); // a fork bomb held at 128 guest tasks peaked at ~2,000
    expect(spec.linux.cgroupsPath).toBe('/studio-gvisor/sbx-0000000000000000');
  });

  it('keeps labels under a prefix runsc never interprets, and reads them back', () => {
    const labelKeys = Object.keys(spec.annotations).filter((k) => k !== CPU_QUOTA_ANNOTATION);
    expect(labelKeys.every((k) => k.startsWith(LABEL_ANNOTATION_PREFIX))).toBe(true);
    expect(spec.annotations['io.kubernetes.cri.container-type']).toBeUndefined();
    expect(spec.annotations['dev.gvisor.flag.network']).toBeUndefined();
    expect(labelsOf({ ...spec.annotations, 'studio.image': 'x' })).toEqual({
      'studio.managed': 'true',
      'io.kubernetes.cri.container-type': 'container',
      'dev.gvisor.flag.network': 'host',
    });
  });
});
