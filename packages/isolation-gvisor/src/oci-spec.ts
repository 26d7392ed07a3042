import type { ResourceLimits } from '@studio/isolation';
import type { OciSeccomp } from './seccomp-profile.ts';

/** Environment of every sandbox process (HOME under /tmp: only /workspace and /tmp are writable). */
export const SANDBOX_ENV: readonly string[] = Object.freeze([
  'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  'HOME=/tmp/home',
  'STUDIO_WORKSPACE=/workspace',
  'LANG=C.UTF-8',
]);

/** Prefix of the OCI annotations that carry a sandbox's labels (never a key runsc itself interprets). */
export const LABEL_ANNOTATION_PREFIX = 'studio.label.';

const CPU_PERIOD_US = 100_000;

/**
 * The annotation that carries a sandbox's CPU quota (`<quota> <period>`, microseconds). The quota is not in
 * `linux.resources`: runsc would apply it from the first instant, and its own kernel's boot, held to one CPU,
 * took 80-100 ms longer (runsc run --detach: 410-450 ms against 300-330 ms without it, measured here). The
 * backend writes it to the sandbox's cgroup as soon as runsc has started it, before the agent is first
 * spoken to, so no sandbox process ever runs without it (see {@link cpuQuotaOf}).
 */
export const CPU_QUOTA_ANNOTATION = 'studio.cpu.quota';

/**
 * The CPU quota a sandbox's cgroup must get after runsc started it, or undefined when its spec still carries it
 * in `linux.resources` (written by an earlier release: runsc applies that one itself).
 */
export function cpuQuotaOf(spec: OciSpec): { quota: number; period: number } | undefined {
  if (spec.linux.resources.cpu) return undefined;
  const m = /^(\d+) (\d+)$/.exec(spec.annotations[CPU_QUOTA_ANNOTATION] ?? '');
  if (!m) return { quota: CPU_PERIOD_US, period: CPU_PERIOD_US };
  return { quota: Number(m[1]), period: Number(m[2]) };
}
const NOFILE = 4096;

/**
 * Host threads the sandbox's own kernel may use on top of the guest's tasks. Measured here (runsc
 * 0.0~20221219, ptrace platform, 2 CPUs): an idle sandbox holds about 40 host threads (Sentry, gofer,
 * stubs), about 110 with its agent connected, and every guest process costs more: a ptrace stub process
 * with one thread per Sentry thread that has run it, kept for reuse after the guest process exits. The
 * cost per process grows with the number of processes (the Sentry runs more threads): a fork bomb held
 * at 128 guest tasks peaked at about 2,000 host threads, one at 256 went past 5,300.
 */
export const HOST_PIDS_BASE = 256;
/** Host threads allowed per guest task (see {@link HOST_PIDS_BASE}). */
export const HOST_PIDS_PER_TASK = 20;

/**
 * The host cgroup's pids limit for a sandbox whose guest may run `pids` tasks. The guest's own limit is
 * RLIMIT_NPROC, which gVisor's kernel enforces per sandbox (fork and clone fail with EAGAIN); this one
 * is the backstop that keeps a sandbox from exhausting the host's pid space. Up to about 128 guest tasks
 * the guest limit is reached first; past that a fork bomb can reach this one first, which stops the
 * whole sandbox (reported as RESOURCE_LIMIT, `limit: 'pids'`; start() brings it back).
 */
export function hostPidsLimit(pids: number): number {
  return HOST_PIDS_BASE + HOST_PIDS_PER_TASK * pids;
}

/** Inputs of {@link ociSpec}; nothing here comes from a client except validated limits and labels. */
export interface OciSpecOptions {
  /** The sandbox's private root (an overlay over the image's rootfs), mounted read-only. */
  rootfs: string;
  /** Host directory mounted at /workspace (the loop-mounted workspace image). */
  workspace: string;
  /** Host directory with the agent, mounted read-only at /opt/studio. */
  agentDir: string;
  resources: ResourceLimits;
  /** Host cgroup path (relative to each controller's root). */
  cgroupsPath: string;
  /** Labels of the sandbox, stored as annotations under {@link LABEL_ANNOTATION_PREFIX}. */
  labels: Record<string, string>;
  /**
   * The sandbox's first process: the agent (an init in front of it, or one itself), which the backend
   * speaks to over this process's stdin and stdout. Every sandbox process descends from it.
   */
  command: readonly string[];
  /** The seccomp filter runsc installs in the first process (see `seccomp-profile.ts`). */
  seccomp: OciSeccomp;
}

/** OCI runtime spec (the subset runsc reads). */
export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  annotations: Record<string, string>;
  linux: {
    namespaces: Array<{ type: string; path?: string }>;
    cgroupsPath: string;
    resources: {
      memory: { limit: number; swap: number };
      /**
       * Template builds ({@link rootfsBuildSpec}) and specs of an earlier release; sessions carry
       * {@link CPU_QUOTA_ANNOTATION} instead.
       */
      cpu?: { quota: number; period: number };
      pids: { limit: number };
    };
    seccomp?: OciSeccomp;
  };
}

export interface OciProcess {
  terminal: boolean;
  user: { uid: number; gid: number; additionalGids?: number[] };
  args: string[];
  env: string[];
  cwd: string;
  capabilities: Record<'bounding' | 'effective' | 'inheritable' | 'permitted' | 'ambient', string[]>;
  noNewPrivileges: boolean;
  rlimits: Array<{ type: string; hard: number; soft: number }>;
}

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

/**
 * A sandbox process: uid/gid 1000 and no other group, no capability in any set, no new privileges,
 * RLIMIT_NPROC at the sandbox's pids limit (gVisor counts it per sandbox: its kernel holds only this
 * sandbox's tasks), 4096 files, no core dumps.
 */
export function sandboxProcess(args: readonly string[], resources: ResourceLimits): OciProcess {
  return {
    terminal: false,
    user: { uid: 1000, gid: 1000, additionalGids: [] },
    args: [...args],
    env: [...SANDBOX_ENV],
    cwd: '/workspace',
    capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
    noNewPrivileges: true,
    rlimits: [
      { type: 'RLIMIT_NOFILE', hard: NOFILE, soft: NOFILE },
      { type: 'RLIMIT_CORE', hard: 0, soft: 0 },
      { type: 'RLIMIT_NPROC', hard: resources.pids, soft: resources.pids },
    ],
  };
}

/**
 * The OCI bundle config of one sandbox: SECURITY.md §1 as runsc settings. The agent as the first process
 * under the seccomp filter (runsc `--oci-seccomp`; processes started with `runsc exec` would run
 * unfiltered, so the backend never starts any). Read-only root, writable only
 * /workspace and a size-limited /tmp, the agent read-only at /opt/studio, new pid/ipc/uts/mount/network
 * namespaces (runsc runs with --network=none: loopback only), memory capped with no swap on top, a CPU
 * quota (applied by the backend once runsc started it: {@link CPU_QUOTA_ANNOTATION}), and the pids backstop of {@link hostPidsLimit}.
 *
 * gVisor's /tmp tmpfs honours `size` and `mode` and ignores `nosuid`/`nodev` (kept here for intent: its
 * kernel grants nothing to setuid files of uid 1000 anyway, and the image has none).
 */
export function ociSpec(o: OciSpecOptions): OciSpec {
  const r = o.resources;
  const annotations: Record<string, string> = {};
  for (const [key, value] of Object.entries(o.labels))
    annotations[`${LABEL_ANNOTATION_PREFIX}${key}`] = value;
  annotations[CPU_QUOTA_ANNOTATION] =
    `${Math.max(1000, Math.round(r.cpus * CPU_PERIOD_US))} ${CPU_PERIOD_US}`;
  return {
    ociVersion: '1.0.2',
    process: sandboxProcess(o.command, r),
    root: { path: o.rootfs, readonly: true },
    hostname: 'sandbox',
    mounts: [...systemMounts(r.tmpBytes), workspaceMount(o.workspace), agentMount(o.agentDir)],
    annotations,
    linux: {
      namespaces: sandboxNamespaces(),
      cgroupsPath: o.cgroupsPath,
      resources: {
        memory: { limit: r.memoryBytes, swap: r.memoryBytes },
        pids: { limit: hostPidsLimit(r.pids) },
      },
      seccomp: o.seccomp,
    },
  };
}

/** Labels of a sandbox read back from its spec's annotations. */
export function labelsOf(annotations: Record<string, string> | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const [key, value] of Object.entries(annotations ?? {})) {
    if (key.startsWith(LABEL_ANNOTATION_PREFIX) && typeof value === 'string') {
      labels[key.slice(LABEL_ANNOTATION_PREFIX.length)] = value;
    }
  }
  return labels;
}

/**
 * /proc, /dev and /sys (read-only) from gVisor's own kernel, and a private /tmp of `tmpBytes` (gVisor's tmpfs
 * honours `size` and `mode`), in the order runsc mounts them.
 */
function systemMounts(tmpBytes: number): OciMount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    {
      destination: '/tmp',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'nodev', `size=${tmpBytes}`, 'mode=1777'],
    },
  ];
}

function workspaceMount(source: string): OciMount {
  return { destination: '/workspace', type: 'bind', source, options: ['rbind', 'rw', 'nosuid', 'nodev'] };
}

/** The agent, read-only at /opt/studio (`AGENT_COMMAND`). */
function agentMount(agentDir: string): OciMount {
  return {
    destination: '/opt/studio',
    type: 'bind',
    source: agentDir,
    options: ['rbind', 'ro', 'nosuid', 'nodev'],
  };
}

/** New pid, ipc, uts, mount and network namespaces (runsc runs with --network=none: loopback only). */
function sandboxNamespaces(): OciSpec['linux']['namespaces'] {
  return [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }];
}

/**
 * The capabilities Docker grants a default container, which a template build's root gets (issue 19): enough for
 * apt, dpkg, chown and useradd, and none of the ones that reach a kernel (SYS_ADMIN, NET_ADMIN, SYS_PTRACE,
 * SYS_MODULE, ...). Under gVisor they are capabilities in the Sentry's kernel, never the host's.
 */
export const DOCKER_DEFAULT_CAPS: readonly string[] = Object.freeze([
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

/** Environment of a template build's first process (the agent, as root); steps add theirs per exec. */
export const BUILD_ENV: readonly string[] = Object.freeze([
  'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  'HOME=/root',
  'STUDIO_WORKSPACE=/workspace',
  'LANG=C.UTF-8',
]);

/** Open files per process in a build (npm and apt open many at once; memory bounds the whole sandbox anyway). */
const BUILD_NOFILE = 65_536;

/** Inputs of {@link rootfsBuildSpec}. */
export interface RootfsBuildSpecOptions {
  /** The build's writable root: an overlay over the base, its upper layer on a loop-mounted image. */
  rootfs: string;
  /** Host directory with the agent, mounted read-only at /opt/studio. */
  agentDir: string;
  /** The first process: the agent. */
  command: readonly string[];
  seccomp: OciSeccomp;
  limits: { memoryBytes: number; cpus: number; pids: number; tmpBytes: number };
  cgroupsPath: string;
  annotations?: Record<string, string>;
}

/**
 * The OCI bundle config of a template build (issue 19): what a session gets, except that the build's user
 * commands run as root. The agent is PID 1 as uid 0 with {@link DOCKER_DEFAULT_CAPS} (capabilities of gVisor's
 * kernel: a build's root is the Sentry's root, not the host's), no new privileges (a setuid file the build makes
 * grants nothing even during the build), the session's seccomp profile read for those capabilities, a
 * writable root (the overlay whose upper layer becomes the template), a private /tmp and an empty /workspace
 * (both tmpfs of `tmpBytes`, discarded: a session mounts its own workspace there), memory with no swap on top,
 * a CPU quota applied by runsc from the first instant (a build is not on a latency path), RLIMIT_NPROC at
 * `pids` (gVisor enforces it for root too; measured) and the host pids backstop of {@link hostPidsLimit}.
 */
export function rootfsBuildSpec(o: RootfsBuildSpecOptions): OciSpec {
  const l = o.limits;
  const caps = [...DOCKER_DEFAULT_CAPS];
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0, additionalGids: [] },
      args: [...o.command],
      env: [...BUILD_ENV],
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, inheritable: [], permitted: [...caps], ambient: [] },
      noNewPrivileges: true,
      rlimits: [
        { type: 'RLIMIT_NOFILE', hard: BUILD_NOFILE, soft: BUILD_NOFILE },
        { type: 'RLIMIT_CORE', hard: 0, soft: 0 },
        { type: 'RLIMIT_NPROC', hard: l.pids, soft: l.pids },
      ],
    },
    root: { path: o.rootfs, readonly: false },
    hostname: 'sandbox',
    mounts: [
      ...systemMounts(l.tmpBytes),
      {
        destination: '/workspace',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'nodev', `size=${l.tmpBytes}`, 'mode=755', 'uid=1000', 'gid=1000'],
      },
      agentMount(o.agentDir),
    ],
    annotations: { ...(o.annotations ?? {}) },
    linux: {
      namespaces: sandboxNamespaces(),
      cgroupsPath: o.cgroupsPath,
      resources: {
        memory: { limit: l.memoryBytes, swap: l.memoryBytes },
        cpu: { quota: Math.max(1000, Math.round(l.cpus * CPU_PERIOD_US)), period: CPU_PERIOD_US },
        pids: { limit: hostPidsLimit(l.pids) },
      },
      seccomp: o.seccomp,
    },
  };
}
