import { describe, expect, it } from 'vitest';
import {
  CPU_QUOTA_ANNOTATION,
  cpuQuotaOf,
  DOCKER_DEFAULT_CAPS,
  HOST_PIDS_BASE,
  HOST_PIDS_PER_TASK,
  hostPidsLimit,
  LABEL_ANNOTATION_PREFIX,
  labelsOf,
  ociSpec,
  rootfsBuildSpec,
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

// Issue 19: a template build runs the user's commands as root, so its spec differs from a session's only where a
// build needs it to; this pins those differences and everything that stays the same.
describe('rootfsBuildSpec (a template build)', () => {
  const build = rootfsBuildSpec({
    rootfs: '/data/builds/build-0000000000000000/rootfs',
    agentDir: '/opt/agent',
    command: AGENT,
    seccomp: SECCOMP,
    limits: { memoryBytes: 512 * 1024 ** 2, cpus: 1.5, pids: 128, tmpBytes: 32 * 1024 ** 2 },
    cgroupsPath: '/studio-builds/build-0000000000000000',
  });

  it("runs the agent as uid 0 with Docker's default capabilities, no new privileges, under the seccomp filter", () => {
    const p = build.process;
    expect(p.user).toEqual({ uid: 0, gid: 0, additionalGids: [] });
    expect(DOCKER_DEFAULT_CAPS).toEqual([
      'CAP_CHOWN',
      'CAP_DAC_OVERRIDE',
      'CAP_FOWNER',
      'CAP_FSETID',
      'CAP_KILL',
      'CAP_SETGID',
      'CAP_SETUID',
      'CAP_SETPCAP',
      'CAP_NET_BIND_SERVICE',
      'CAP_SYS_CHROOT',
      'CAP_MKNOD',
      'CAP_AUDIT_WRITE',
      'CAP_SETFCAP',
    ]);
    expect(p.capabilities.bounding).toEqual(DOCKER_DEFAULT_CAPS);
    expect(p.capabilities.effective).toEqual(DOCKER_DEFAULT_CAPS);
    expect(p.capabilities.permitted).toEqual(DOCKER_DEFAULT_CAPS);
    expect(p.capabilities.inheritable).toEqual([]);
    expect(p.capabilities.ambient).toEqual([]);
    expect(p.noNewPrivileges).toBe(true);
    expect(p.args).toEqual(AGENT);
    expect(p.env).toContain('HOME=/root');
    expect(build.linux.seccomp).toEqual(SECCOMP);
    expect(p.rlimits).toContainEqual({ type: 'RLIMIT_NPROC', hard: 128, soft: 128 });
    expect(p.rlimits).toContainEqual({ type: 'RLIMIT_CORE', hard: 0, soft: 0 });
  });

  it('writes to its own root, and mounts only proc, dev, sys, two sized tmpfs and the read-only agent', () => {
    expect(build.root).toEqual({ path: '/data/builds/build-0000000000000000/rootfs', readonly: false });
    expect(build.mounts.map((m) => m.destination)).toEqual([
      '/proc',
      '/dev',
      '/sys',
      '/tmp',
      '/workspace',
      '/opt/studio',
    ]);
    const by = Object.fromEntries(build.mounts.map((m) => [m.destination, m]));
    expect(by['/tmp']?.options).toEqual(['nosuid', 'nodev', `size=${32 * 1024 ** 2}`, 'mode=1777']);
    // Nothing written to /workspace survives: a session mounts its own workspace there.
    expect(by['/workspace']).toEqual({
      destination: '/workspace',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'nodev', `size=${32 * 1024 ** 2}`, 'mode=755', 'uid=1000', 'gid=1000'],
    });
    expect(build.mounts.filter((m) => m.type === 'bind').map((m) => [m.source, m.options])).toEqual([
      ['/opt/agent', ['rbind', 'ro', 'nosuid', 'nodev']],
    ]);
  });

  it('caps memory (swap equal), CPU from the first instant, host pids, in new namespaces only', () => {
    expect(build.linux.resources.memory).toEqual({ limit: 512 * 1024 ** 2, swap: 512 * 1024 ** 2 });
    expect(build.linux.resources.cpu).toEqual({ quota: 150_000, period: 100_000 });
    expect(cpuQuotaOf(build)).toBeUndefined();
    expect(build.linux.resources.pids.limit).toBe(hostPidsLimit(128));
    expect(build.linux.namespaces.map((n) => n.type).sort()).toEqual([
      'ipc',
      'mount',
      'network',
      'pid',
      'uts',
    ]);
    expect(build.linux.namespaces.every((n) => n.path === undefined)).toBe(true);
    expect(build.linux.cgroupsPath).toBe('/studio-builds/build-0000000000000000');
  });
});
