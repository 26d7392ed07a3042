import { describe, expect, it } from 'vitest';
import { containerConfig } from './hardening.ts';

const config = containerConfig({
  name: 'studio-sbx-0000000000000000',
  image: 'studio-sandbox:latest',
  command: ['/opt/studio/studio-agent'],
  labels: { 'studio.managed': 'true' },
  resources: {
    memoryBytes: 1024 ** 3,
    cpus: 1,
    pids: 256,
    diskBytes: 2 * 1024 ** 3,
    inodes: 100_000,
    tmpBytes: 64 * 1024 ** 2,
  },
  workspace: { type: 'bind', source: '/data/workspaces/x' },
  agentDir: '/opt/agent',
  seccompProfile: '{"defaultAction":"SCMP_ACT_ERRNO"}',
  apparmorProfile: 'studio-sandbox',
});
const host = config.HostConfig ?? {};

// The live attacks are in the conformance suite; this pins the settings so a refactor cannot drop one silently.
describe('containerConfig (SECURITY.md §1)', () => {
  it('runs as 1000:1000 with no capabilities, no new privileges, seccomp and AppArmor', () => {
    expect(config.User).toBe('1000:1000');
    expect(host.CapDrop).toEqual(['ALL']);
    expect(host.CapAdd).toEqual([]);
    expect(host.Privileged).toBe(false);
    expect(host.SecurityOpt).toContain('no-new-privileges:true');
    expect(host.SecurityOpt).toContain('seccomp={"defaultAction":"SCMP_ACT_ERRNO"}');
    expect(host.SecurityOpt).toContain('apparmor=studio-sandbox');
  });
  it('has a read-only root, a size-limited /tmp and only the workspace and the read-only agent mounted', () => {
    expect(host.ReadonlyRootfs).toBe(true);
    expect(host.Tmpfs?.['/tmp']).toMatch(/size=67108864/);
    expect(host.Tmpfs?.['/tmp']).toMatch(/nosuid/);
    expect(Object.keys(host.Tmpfs ?? {})).toEqual(['/tmp']);
    expect(host.Binds ?? []).toEqual([]);
    expect(host.Mounts).toEqual([
      { Type: 'bind', Source: '/data/workspaces/x', Target: '/workspace', ReadOnly: false },
      { Type: 'bind', Source: '/opt/agent', Target: '/opt/studio', ReadOnly: true },
    ]);
    expect(host.Devices).toEqual([]);
  });
  it('has no network and no shared host namespaces', () => {
    expect(host.NetworkMode).toBe('none');
    expect(config.NetworkDisabled).toBe(true);
    expect(host.IpcMode).toBe('private');
    expect(host.PidMode).toBe('');
  });
  it('caps memory with swap equal to memory, CPU by quota, pids, and logs nothing on the host', () => {
    expect(host.Memory).toBe(1024 ** 3);
    expect(host.MemorySwap).toBe(1024 ** 3);
    expect(host.NanoCpus).toBe(1e9);
    expect(host.PidsLimit).toBe(256);
    expect(host.LogConfig?.Type).toBe('none');
  });
  it('omits AppArmor when the host has none', () => {
    const c = containerConfig({
      name: 'x',
      image: 'i',
      command: ['true'],
      labels: {},
      resources: { memoryBytes: 1, cpus: 1, pids: 1, diskBytes: 1, inodes: 1, tmpBytes: 1 },
      workspace: { type: 'volume', source: 'v' },
      agentDir: '/a',
      seccompProfile: '{}',
      apparmorProfile: undefined,
    });
    expect(c.HostConfig?.SecurityOpt?.some((o: string) => o.startsWith('apparmor'))).toBe(false);
  });
});
