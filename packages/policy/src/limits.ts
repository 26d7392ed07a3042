import { z } from 'zod';
import { parseEgressRule } from './egress.ts';
import { PolicyError } from './errors.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * Longest token string (JWT or API token) any input accepts. Security meaning: tokens are refused by length
 * before any base64 or JSON parsing, so a megabyte "token" costs nothing to reject.
 */
export const MAX_TOKEN_LENGTH = 4096;

/** Per-sandbox resource limits (SECURITY.md §1). Every field is a ceiling enforced by the backend. */
export interface SandboxLimits {
  /** Memory cgroup limit. 64 MiB..16 GiB, default 1 GiB. */
  readonly memoryBytes: number;
  /**
   * The memory+swap ceiling (Docker `HostConfig.MemorySwap`). Must equal `memoryBytes`, which means the
   * sandbox gets no swap at all: a memory bomb hits the OOM killer instead of thrashing the host's disk.
   */
  readonly swapBytes: number;
  /** CPU quota in CPUs (Docker `NanoCpus`), a hard cap rather than shares. 0.1..16, default 1. */
  readonly cpus: number;
  /**
   * pids cgroup limit for the whole sandbox (threads count). 64..4096, default 512: an ordinary `npm install`
   * plus a dev server (each Node process has about a dozen threads) fits; a fork bomb stops quickly.
   */
  readonly pids: number;
  /** Workspace disk quota. 64 MiB..64 GiB, default 2 GiB. */
  readonly diskBytes: number;
  /** Workspace inode quota (against inode exhaustion). 1000..10M, default 200 000: a large node_modules fits. */
  readonly inodes: number;
  /** Size of the tmpfs at /tmp, which counts against memory. 1 MiB..memoryBytes, default 256 MiB. */
  readonly tmpBytes: number;
  /** Cap on the container log kept on the host (no unbounded logs). 64 KiB..1 GiB, default 10 MiB. */
  readonly logBytes: number;
}

/** Limits on one command run (SECURITY.md §1). */
export interface ExecLimits {
  /** Wall-clock timeout when the caller gives none. 100 ms..maxTimeoutMs, default 30 s. */
  readonly defaultTimeoutMs: number;
  /** Largest timeout a caller may ask for; the process group is killed after it. 1 s..1 h, default 10 min. */
  readonly maxTimeoutMs: number;
  /** Output kept per exec (stdout + stderr); the rest is dropped and flagged. 1 KiB..64 MiB, default 1 MiB. */
  readonly maxOutputBytes: number;
  /** Largest stdin a caller may send. 1 KiB..16 MiB, default 1 MiB. */
  readonly maxStdinBytes: number;
}

/** Limits on the files API. */
export interface FilesLimits {
  /** Largest file read or written through the API. 1 KiB..100 MiB, default 10 MiB. */
  readonly maxFileBytes: number;
  /** Most entries one directory listing returns. 1..100 000, default 5000. */
  readonly maxListEntries: number;
}

/** Session lifetime limits. */
export interface SessionLimits {
  /**
   * A running session with no activity for this long is stopped (when it was not paused first). 1 min..ttlMs,
   * default 30 min.
   */
  readonly idleTimeoutMs: number;
  /**
   * A session is stopped this long after creation, active or not; time spent paused does not count (issue 20).
   * 1 min..7 days, default 8 h.
   */
  readonly ttlMs: number;
  /**
   * A running session with no activity (exec, terminal input, file operation or change, preview request) for this
   * long is paused: saved with its memory where the backend can, holding none of the host's memory, and resumed by
   * its next use (issue 20). A running program alone does not count as activity unless the session is created
   * with `keepAwake`. 0 turns automatic pausing off; else 10 s..7 days, default 10 min.
   */
  readonly pauseAfterMs: number;
}

/** Snapshots and forks (issue 20). */
export interface SnapshotLimits {
  /** Bytes of the host's disk one user's snapshots may take in all. 0..1 TiB, default 10 GiB (0: no snapshots). */
  readonly maxBytesPerUser: number;
  /** Most sessions one fork makes. 1..20, default 10 (each also counts against the live-session limit). */
  readonly maxForks: number;
}

/** WebSocket limits (SECURITY.md §4, §5). */
export interface WebSocketLimits {
  /** Largest message accepted; bigger frames close the socket. 1 KiB..1 MiB, default 64 KiB. */
  readonly maxMessageBytes: number;
  /** The first message must authenticate within this time, else close 1008. 100 ms..5 s, default 5 s. */
  readonly authTimeoutMs: number;
  /** Messages accepted per session per minute. 1..10 000, default 1000. */
  readonly messagesPerMinute: number;
  /** Ping interval; a peer that misses a pong is dropped. 1 s..5 min, default 30 s. */
  readonly heartbeatMs: number;
}

/** Terminal size ceilings; a resize beyond them is refused (huge sizes make the emulator allocate). */
export interface TerminalLimits {
  /** 1..500, default 500. */
  readonly maxCols: number;
  /** 1..200, default 200. */
  readonly maxRows: number;
}

/**
 * Session recording (terminal output as asciicast v2, and the session's event log) kept under the data dir.
 * Security meaning: a recording holds what terminals printed (which may include secrets a program echoed), so
 * it is readable only by the session's owner and deleted `keepDays` after the session ends; the size bound keeps one session
 * from filling the host's disk; `enabled: false` is the operator's switch to keep no recordings at all.
 * Terminal input (keystrokes, which include passwords typed at prompts) is never recorded.
 */
export interface RecordingLimits {
  /** Record sessions (default true). False: nothing is written, `recordings.list` says recording is off. */
  readonly enabled: boolean;
  /** Bytes one session's recording may take across its files; then it stops with a marker. 64 KiB..1 GiB, default 16 MiB. */
  readonly maxBytesPerSession: number;
  /**
   * Days a destroyed session's recording is kept after its last write, so what happened can be replayed after
   * the sandbox is gone (an agent ends its own). 0 deletes it with the session. 0..365, default 7.
   */
  readonly keepDays: number;
}

/** Preview proxy limits. */
export interface PreviewLimits {
  /** Largest proxied response body; the stream is cut after it. 1 KiB..1 GiB, default 50 MiB. */
  readonly maxResponseBytes: number;
  /** Time allowed for the sandbox to answer. 1 s..5 min, default 30 s. */
  readonly timeoutMs: number;
}

/** Egress limits (issue 18): what the egress proxy allows a session, whatever its network mode. */
export interface EgressLimits {
  /** Whether sessions may use network mode `open` (any public host). Default false: allowlists only. */
  readonly allowOpen: boolean;
  /**
   * Non-public blocks (CIDR) the operator declares reachable, e.g. an internal package mirror. Default none.
   * Never the host's own addresses.
   */
  readonly reachableNets: readonly string[];
  /** Connections one session may hold open at once. 1..1024, default 64. */
  readonly maxConnections: number;
  /** Bytes (both directions) one session may move through the proxy per hour. 1 MiB..64 GiB, default 8 GiB. */
  readonly maxBytesPerHour: number;
  /** New connections one session may open per minute. 1..10 000, default 600. */
  readonly connectionsPerMinute: number;
  /** A connection with no bytes either way for this long is closed. 1 s..1 h, default 5 min. */
  readonly idleTimeoutMs: number;
  /** A connection is closed this long after it opened. 1 s..24 h, default 1 h. */
  readonly totalTimeoutMs: number;
}

/**
 * Template builds (issue 19): who may build, and the bounds of one build. A build runs isolated like a session
 * (as root only inside a gVisor sandbox), so these bound cost, not trust.
 */
export interface TemplateLimits {
  /** Who may create and build templates: `everyone` (default) or only `admins`. */
  readonly builders: 'everyone' | 'admins';
  /** Templates one user may own. 0..100, default 10 (0: nobody but admins' shared ones). */
  readonly maxPerUser: number;
  /** Bytes a build may add to or change in its base (its writable layer). 64 MiB..64 GiB, default 4 GiB. */
  readonly maxBytes: number;
  /** Time one build may take, end to end. 10 s..2 h, default 20 min. */
  readonly buildTimeoutMs: number;
  /** Memory of a build sandbox (no swap). 256 MiB..16 GiB, default 2 GiB. */
  readonly buildMemoryBytes: number;
  /** CPU quota of a build sandbox, in cores. 0.25..64, default 1. */
  readonly buildCpus: number;
  /** Processes and threads of a build sandbox. 64..8192, default 1024. */
  readonly buildPids: number;
  /** Builds that run at once on this server; more wait their turn. 1..16, default 2. */
  readonly concurrentBuilds: number;
  /**
   * The hosts a build may reach through the egress proxy: the package sources (names or wildcards, optional
   * `:port`). Default Debian's archive, the npm registry and PyPI. `egress.reachableNets` applies to builds too.
   */
  readonly sources: readonly string[];
}

/** Every tunable security limit of Studio, validated by {@link parsePolicy}. */
export interface Policy {
  /** Live sessions one user may hold, enforced atomically by the API. 1..5 (SECURITY.md §5), default 5. */
  readonly maxLiveSessionsPerUser: number;
  readonly sandbox: SandboxLimits;
  readonly exec: ExecLimits;
  readonly files: FilesLimits;
  readonly session: SessionLimits;
  readonly websocket: WebSocketLimits;
  readonly terminal: TerminalLimits;
  readonly recording: RecordingLimits;
  readonly preview: PreviewLimits;
  readonly egress: EgressLimits;
  readonly templates: TemplateLimits;
  readonly snapshots: SnapshotLimits;
}

const int = (min: number, max: number) => z.int().min(min).max(max);

/**
 * The hard floor and ceiling of every per-sandbox limit: what {@link parsePolicy} accepts for `sandbox.*`, what
 * `sessions.create` accepts from a client, and what every isolation backend accepts in a spec
 * (`validateSandboxSpec` of `@studio/isolation` checks {@link sandboxResourcesSchema}). Security meaning: one
 * set of numbers for the whole system, so no configuration, client or backend can ask for a sandbox too small
 * to hold its own agent (below 64 MiB or 64 pids the agent and a shell cannot start reliably, and a failure
 * there looks like an attack) or larger than a host should give one session.
 */
export const SANDBOX_LIMIT_BOUNDS: {
  readonly [K in keyof SandboxLimits]: { readonly min: number; readonly max: number };
} = Object.freeze({
  memoryBytes: Object.freeze({ min: 64 * MiB, max: 16 * GiB }),
  swapBytes: Object.freeze({ min: 64 * MiB, max: 16 * GiB }),
  cpus: Object.freeze({ min: 0.1, max: 16 }),
  pids: Object.freeze({ min: 64, max: 4096 }),
  diskBytes: Object.freeze({ min: 64 * MiB, max: 64 * GiB }),
  inodes: Object.freeze({ min: 1000, max: 10_000_000 }),
  tmpBytes: Object.freeze({ min: 1 * MiB, max: 16 * GiB }),
  logBytes: Object.freeze({ min: 64 * KiB, max: 1 * GiB }),
});

const bounded = (key: Exclude<keyof SandboxLimits, 'cpus'>) =>
  int(SANDBOX_LIMIT_BOUNDS[key].min, SANDBOX_LIMIT_BOUNDS[key].max);
const cpusBounded = () => z.number().min(SANDBOX_LIMIT_BOUNDS.cpus.min).max(SANDBOX_LIMIT_BOUNDS.cpus.max);
const TMP_WITHIN_MEMORY = 'must not exceed memoryBytes (tmpfs pages count against the memory limit)';

/**
 * The six limits a backend enforces on one sandbox (the isolation contract's `ResourceLimits`): each within
 * {@link SANDBOX_LIMIT_BOUNDS}, whole numbers but `cpus`, and `/tmp` no larger than memory. Strict: an unknown
 * key is refused, so nothing but these six numbers ever reaches a runtime through a spec.
 */
export const sandboxResourcesSchema = z
  .strictObject({
    memoryBytes: bounded('memoryBytes'),
    cpus: cpusBounded(),
    pids: bounded('pids'),
    diskBytes: bounded('diskBytes'),
    inodes: bounded('inodes'),
    tmpBytes: bounded('tmpBytes'),
  })
  .superRefine((r, ctx) => {
    if (r.tmpBytes > r.memoryBytes) {
      ctx.addIssue({ code: 'custom', path: ['tmpBytes'], message: TMP_WITHIN_MEMORY });
    }
  });

/** What {@link sandboxResourcesSchema} accepts: the per-sandbox limits a backend enforces. */
export type SandboxResources = z.infer<typeof sandboxResourcesSchema>;

const sandboxShape = z.strictObject({
  memoryBytes: bounded('memoryBytes'),
  swapBytes: bounded('swapBytes'),
  cpus: cpusBounded(),
  pids: bounded('pids'),
  diskBytes: bounded('diskBytes'),
  inodes: bounded('inodes'),
  tmpBytes: bounded('tmpBytes'),
  logBytes: bounded('logBytes'),
});
const execShape = z.strictObject({
  defaultTimeoutMs: int(100, HOUR),
  maxTimeoutMs: int(SECOND, HOUR),
  maxOutputBytes: int(KiB, 64 * MiB),
  maxStdinBytes: int(KiB, 16 * MiB),
});
const filesShape = z.strictObject({
  maxFileBytes: int(KiB, 100 * MiB),
  maxListEntries: int(1, 100_000),
});
const sessionShape = z.strictObject({
  idleTimeoutMs: int(MINUTE, 7 * DAY),
  ttlMs: int(MINUTE, 7 * DAY),
  pauseAfterMs: z.union([z.literal(0), int(10 * SECOND, 7 * DAY)]),
});
const snapshotsShape = z.strictObject({
  maxBytesPerUser: int(0, 1024 * GiB),
  maxForks: int(1, 20),
});
const websocketShape = z.strictObject({
  maxMessageBytes: int(KiB, MiB),
  authTimeoutMs: int(100, 5 * SECOND),
  messagesPerMinute: int(1, 10_000),
  heartbeatMs: int(SECOND, 5 * MINUTE),
});
const terminalShape = z.strictObject({ maxCols: int(1, 500), maxRows: int(1, 200) });
const recordingShape = z.strictObject({
  enabled: z.boolean(),
  maxBytesPerSession: int(64 * KiB, GiB),
  keepDays: int(0, 365),
});
const previewShape = z.strictObject({
  maxResponseBytes: int(KiB, GiB),
  timeoutMs: int(SECOND, 5 * MINUTE),
});

const CIDR_TEXT = /^[0-9a-fA-F.:]{2,45}\/[0-9]{1,3}$/;
const egressShape = z.strictObject({
  allowOpen: z.boolean(),
  reachableNets: z
    .array(z.string().regex(CIDR_TEXT, { error: 'must be a block such as 10.20.0.0/16' }))
    .max(64),
  maxConnections: int(1, 1024),
  maxBytesPerHour: int(MiB, 64 * GiB),
  connectionsPerMinute: int(1, 10_000),
  idleTimeoutMs: int(SECOND, HOUR),
  totalTimeoutMs: int(SECOND, DAY),
});

const templatesShape = z.strictObject({
  builders: z.enum(['everyone', 'admins']),
  maxPerUser: int(0, 100),
  maxBytes: int(64 * MiB, 64 * GiB),
  buildTimeoutMs: int(10 * SECOND, 2 * HOUR),
  buildMemoryBytes: int(256 * MiB, 16 * GiB),
  buildCpus: z.number().min(0.25).max(64),
  buildPids: int(64, 8192),
  concurrentBuilds: int(1, 16),
  sources: z.array(z.string().min(1).max(300)).max(64),
});

const policySchema = z
  .strictObject({
    maxLiveSessionsPerUser: int(1, 5),
    sandbox: sandboxShape,
    exec: execShape,
    files: filesShape,
    session: sessionShape,
    websocket: websocketShape,
    terminal: terminalShape,
    recording: recordingShape,
    preview: previewShape,
    egress: egressShape,
    templates: templatesShape,
    snapshots: snapshotsShape,
  })
  .superRefine((p, ctx) => {
    if (p.sandbox.swapBytes !== p.sandbox.memoryBytes) {
      ctx.addIssue({
        code: 'custom',
        path: ['sandbox', 'swapBytes'],
        message: 'must equal sandbox.memoryBytes (the memory+swap ceiling equal to memory means no swap)',
      });
    }
    if (p.sandbox.tmpBytes > p.sandbox.memoryBytes) {
      ctx.addIssue({
        code: 'custom',
        path: ['sandbox', 'tmpBytes'],
        message: 'must not exceed sandbox.memoryBytes (tmpfs pages count against the memory limit)',
      });
    }
    if (p.exec.defaultTimeoutMs > p.exec.maxTimeoutMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['exec', 'defaultTimeoutMs'],
        message: 'must not exceed exec.maxTimeoutMs',
      });
    }
    for (const [i, net] of p.egress.reachableNets.entries()) {
      let cidr = false;
      try {
        cidr = parseEgressRule(net).kind === 'cidr';
      } catch {
        cidr = false;
      }
      if (!cidr) {
        ctx.addIssue({
          code: 'custom',
          path: ['egress', 'reachableNets', i],
          message: 'must be an address block such as 10.20.0.0/16',
        });
      }
    }
    for (const [i, source] of p.templates.sources.entries()) {
      let host = false;
      try {
        host = parseEgressRule(source).kind !== 'cidr';
      } catch {
        host = false;
      }
      if (!host) {
        ctx.addIssue({
          code: 'custom',
          path: ['templates', 'sources', i],
          message:
            'must be a host name or wildcard such as deb.debian.org or *.example.com, with an optional :port',
        });
      }
    }
    if (p.session.idleTimeoutMs > p.session.ttlMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['session', 'idleTimeoutMs'],
        message: 'must not exceed session.ttlMs',
      });
    }
  });

const overridesSchema = z.strictObject({
  maxLiveSessionsPerUser: int(1, 5).optional(),
  sandbox: sandboxShape.partial().optional(),
  exec: execShape.partial().optional(),
  files: filesShape.partial().optional(),
  session: sessionShape.partial().optional(),
  websocket: websocketShape.partial().optional(),
  terminal: terminalShape.partial().optional(),
  recording: recordingShape.partial().optional(),
  preview: previewShape.partial().optional(),
  egress: egressShape.partial().optional(),
  templates: templatesShape.partial().optional(),
  snapshots: snapshotsShape.partial().optional(),
});

/** Partial overrides accepted by {@link parsePolicy}: any subset of fields, two levels deep. */
export type PolicyOverrides = z.input<typeof overridesSchema>;

function deepFreeze<T extends object>(value: T): T {
  for (const v of Object.values(value)) {
    if (typeof v === 'object' && v !== null) deepFreeze(v);
  }
  return Object.freeze(value);
}

/**
 * The default limits, deep-frozen. Security meaning: these are the numbers SECURITY.md requires (1 GiB memory
 * with no swap, 1 CPU, 5 live sessions per user, 1000 WebSocket messages a minute, 5 s to authenticate, …).
 */
export const defaultPolicy: Policy = deepFreeze({
  maxLiveSessionsPerUser: 5,
  sandbox: {
    memoryBytes: 1 * GiB,
    swapBytes: 1 * GiB,
    cpus: 1,
    pids: 512,
    diskBytes: 2 * GiB,
    inodes: 200_000,
    tmpBytes: 256 * MiB,
    logBytes: 10 * MiB,
  },
  exec: {
    defaultTimeoutMs: 30 * SECOND,
    maxTimeoutMs: 10 * MINUTE,
    maxOutputBytes: 1 * MiB,
    maxStdinBytes: 1 * MiB,
  },
  files: { maxFileBytes: 10 * MiB, maxListEntries: 5000 },
  session: { idleTimeoutMs: 30 * MINUTE, ttlMs: 8 * HOUR, pauseAfterMs: 10 * MINUTE },
  websocket: {
    maxMessageBytes: 64 * KiB,
    authTimeoutMs: 5 * SECOND,
    messagesPerMinute: 1000,
    heartbeatMs: 30 * SECOND,
  },
  terminal: { maxCols: 500, maxRows: 200 },
  recording: { enabled: true, maxBytesPerSession: 16 * MiB, keepDays: 7 },
  preview: { maxResponseBytes: 50 * MiB, timeoutMs: 30 * SECOND },
  egress: {
    allowOpen: false,
    reachableNets: [],
    maxConnections: 64,
    maxBytesPerHour: 8 * GiB,
    connectionsPerMinute: 600,
    idleTimeoutMs: 5 * MINUTE,
    totalTimeoutMs: HOUR,
  },
  templates: {
    builders: 'everyone',
    maxPerUser: 10,
    maxBytes: 4 * GiB,
    buildTimeoutMs: 20 * MINUTE,
    buildMemoryBytes: 2 * GiB,
    buildCpus: 1,
    buildPids: 1024,
    concurrentBuilds: 2,
    sources: [
      'deb.debian.org',
      'security.debian.org',
      'registry.npmjs.org',
      'pypi.org',
      'files.pythonhosted.org',
    ],
  },
  snapshots: { maxBytesPerUser: 10 * GiB, maxForks: 10 },
});

// A field explicitly set to undefined (an unset env variable) keeps its default rather than erasing it.
function defined<T extends object>(
  defaults: T,
  overrides: Partial<T> | undefined,
): { -readonly [K in keyof T]: T[K] } {
  const out = { ...defaults };
  for (const [key, value] of Object.entries(overrides ?? {})) {
    if (value !== undefined) (out as Record<string, unknown>)[key] = value;
  }
  return out;
}

function refuse(error: z.ZodError): never {
  const detail = error.issues
    .slice(0, 5)
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`)
    .join('; ');
  throw new PolicyError('POLICY_INVALID', `policy configuration is invalid (${detail}); fix those fields`, {
    cause: error,
  });
}

/**
 * Builds the effective {@link Policy} from partial overrides (for example parsed from an app's env), deep-merged
 * onto {@link defaultPolicy}, and returns it deep-frozen. `undefined` gives the defaults.
 *
 * Security meaning: configuration cannot switch a control off. Every field has a hard floor and ceiling
 * (documented on each field; e.g. at most 5 live sessions per user, 5 s to authenticate), unknown keys are
 * refused (a typo must not silently keep a default), swap must equal memory, and cross-field rules hold
 * (default timeout ≤ max, idle ≤ ttl, /tmp ≤ memory). Overriding only `sandbox.memoryBytes` moves `swapBytes`
 * with it. Any violation throws POLICY_INVALID naming the field path.
 */
export function parsePolicy(config: unknown): Policy {
  const overrides = overridesSchema.safeParse(config === undefined ? {} : config);
  if (!overrides.success) refuse(overrides.error);
  const o = overrides.data;
  const sandbox = defined(defaultPolicy.sandbox, o.sandbox);
  if (o.sandbox?.memoryBytes !== undefined && o.sandbox.swapBytes === undefined) {
    sandbox.swapBytes = o.sandbox.memoryBytes;
  }
  const merged = {
    maxLiveSessionsPerUser: o.maxLiveSessionsPerUser ?? defaultPolicy.maxLiveSessionsPerUser,
    sandbox,
    exec: defined(defaultPolicy.exec, o.exec),
    files: defined(defaultPolicy.files, o.files),
    session: defined(defaultPolicy.session, o.session),
    websocket: defined(defaultPolicy.websocket, o.websocket),
    terminal: defined(defaultPolicy.terminal, o.terminal),
    recording: defined(defaultPolicy.recording, o.recording),
    preview: defined(defaultPolicy.preview, o.preview),
    egress: defined(defaultPolicy.egress, o.egress),
    templates: defined(defaultPolicy.templates, o.templates),
    snapshots: defined(defaultPolicy.snapshots, o.snapshots),
  };
  const full = policySchema.safeParse(merged);
  if (!full.success) refuse(full.error);
  return deepFreeze(full.data);
}
