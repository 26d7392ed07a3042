import type { ResourceLimits } from '@studio/isolation';
import type Docker from 'dockerode';

/** Inputs of {@link containerConfig}; everything the client may influence is already validated policy. */
export interface ContainerConfigOptions {
  name: string;
  image: string;
  command: readonly string[];
  labels: Record<string, string>;
  resources: ResourceLimits;
  /** Host path (loop mount) or Docker volume name mounted at /workspace. */
  workspace: { type: 'bind' | 'volume'; source: string };
  agentDir: string;
  seccompProfile: string;
  apparmorProfile: string | undefined;
}

/**
 * The container every sandbox runs in: SECURITY.md §1 as Docker settings. Nothing here comes from a
 * client: callers cannot add mounts, capabilities, devices, privileged mode or another user.
 */
export function containerConfig(o: ContainerConfigOptions): Docker.ContainerCreateOptions {
  const securityOpt = ['no-new-privileges:true', `seccomp=${o.seccompProfile}`];
  if (o.apparmorProfile) securityOpt.push(`apparmor=${o.apparmorProfile}`);
  return {
    name: o.name,
    Image: o.image,
    Cmd: [...o.command],
    Entrypoint: [],
    User: '1000:1000',
    WorkingDir: '/workspace',
    // HOME under /tmp: SECURITY.md allows writes only to /workspace and /tmp, and git, npm and shells need a HOME.
    Env: ['HOME=/tmp/home', 'STUDIO_WORKSPACE=/workspace', 'LANG=C.UTF-8'],
    Labels: o.labels,
    // The agent speaks over attached stdio; no TTY so frames are not mangled by a line discipline.
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: true,
    StdinOnce: false,
    Tty: false,
    NetworkDisabled: true,
    StopSignal: 'SIGKILL',
    HostConfig: {
      NetworkMode: 'none',
      ReadonlyRootfs: true,
      CapDrop: ['ALL'],
      CapAdd: [],
      Privileged: false,
      SecurityOpt: securityOpt,
      IpcMode: 'private',
      PidMode: '',
      UsernsMode: '',
      Devices: [],
      Tmpfs: {
        '/tmp': `rw,nosuid,nodev,size=${o.resources.tmpBytes},mode=1777`,
      },
      Mounts: [
        o.workspace.type === 'bind'
          ? { Type: 'bind', Source: o.workspace.source, Target: '/workspace', ReadOnly: false }
          : { Type: 'volume', Source: o.workspace.source, Target: '/workspace', ReadOnly: false },
        { Type: 'bind', Source: o.agentDir, Target: '/opt/studio', ReadOnly: true },
      ],
      Memory: o.resources.memoryBytes,
      // Docker's MemorySwap is memory + swap: equal to Memory means the sandbox gets no swap on top.
      MemorySwap: o.resources.memoryBytes,
      MemorySwappiness: 0,
      NanoCpus: Math.round(o.resources.cpus * 1e9),
      PidsLimit: o.resources.pids,
      Ulimits: [
        { Name: 'core', Soft: 0, Hard: 0 },
        { Name: 'nofile', Soft: 4096, Hard: 4096 },
      ],
      // Prefer killing sandbox processes over anything on the host when memory runs out.
      OomScoreAdj: 500,
      // Nothing the sandbox prints is logged on the host: the agent's stream is attached, never logged.
      LogConfig: { Type: 'none', Config: {} },
      RestartPolicy: { Name: 'no' },
      AutoRemove: false,
    },
  };
}
