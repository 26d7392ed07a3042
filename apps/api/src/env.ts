import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { checkNodeSecret, type Policy, parsePolicy, previewSiteProblem } from '@studio/policy';
import { z } from 'zod';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

const port = z.coerce.number().int().min(0).max(65_535);
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const origin = z.string().regex(/^https?:\/\/[A-Za-z0-9.[\]:-]+$/, {
  error: 'each origin must look like http://host[:port] or https://host[:port], no path',
});

const schema = z.object({
  STUDIO_HOST: z.string().min(1).default('127.0.0.1'),
  STUDIO_PORT: port.default(4000),
  // Previews on by default, on their own port, as `<port>-<label>.localhost:<port>`: another site than the IDE.
  STUDIO_PREVIEW_PORT: port.default(4001),
  // Previews behind Traefik: `<port>-<label>.<domain>` (a wildcard DNS record and certificate) on a registrable
  // domain of their own, never the IDE's (checked below).
  STUDIO_PREVIEW_DOMAIN: z
    .string()
    .max(200)
    .regex(/^(?=.{1,200}$)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$/, {
      error:
        'STUDIO_PREVIEW_DOMAIN is a lower-case DNS name like preview.example.com (no scheme, port or path)',
    })
    .optional(),
  STUDIO_PREVIEW_SCHEME: z.enum(['http', 'https']).optional(),
  // What E2B SDKs are told sandboxes live under (`49983-<id>.<domain>`, `<port>-<id>.<domain>`): the preview
  // domain as the public sees it, with a port when it is not the scheme's default.
  STUDIO_E2B_DOMAIN: z
    .string()
    .max(200)
    .regex(/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?$/, {
      error: 'STUDIO_E2B_DOMAIN is a lower-case DNS name with an optional port, like preview.example.com',
    })
    .optional(),
  STUDIO_DATA_DIR: z.string().min(1).optional(),
  STUDIO_SNAPSHOTS_DIR: z
    .string()
    .regex(/^\//, { error: 'STUDIO_SNAPSHOTS_DIR must be an absolute path (a directory every node mounts)' })
    .optional(),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, { error: 'DATABASE_URL must start with postgres:// or postgresql://' })
    .optional(),
  STUDIO_JWT_SECRET: z
    .string()
    .min(32, { error: 'STUDIO_JWT_SECRET must be at least 32 characters (try: openssl rand -base64 48)' })
    .optional(),
  STUDIO_SECRETS_KEY: z
    .string()
    .regex(/^[A-Za-z0-9+/_-]{43}=?$/, {
      error: 'STUDIO_SECRETS_KEY is 32 random bytes as base64 (try: openssl rand -base64 32)',
    })
    .optional(),
  STUDIO_EGRESS_CA_FILE: z.string().min(1).optional(),
  STUDIO_ADMIN_PASSWORD: z
    .string()
    .min(12, { error: 'STUDIO_ADMIN_PASSWORD must be at least 12 characters' })
    .max(1024)
    .optional(),
  STUDIO_BACKENDS: z
    .string()
    .default('auto')
    .transform((v) => v.split(',').map((s) => s.trim().toLowerCase()))
    .pipe(z.array(z.enum(['auto', 'docker', 'gvisor'])).min(1)),
  STUDIO_ORIGINS: z
    .string()
    .optional()
    .transform((v) =>
      (v ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    )
    .pipe(z.array(origin).max(32)),
  STUDIO_IMAGES: z
    .string()
    .default('studio-sandbox:latest')
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    )
    .pipe(z.array(z.string().max(255)).min(1)),
  STUDIO_INSTANCE_ID: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/)
    .optional(),
  STUDIO_POLICY: z
    .string()
    .max(64 * 1024)
    .optional(),
  STUDIO_SANDBOX_ROOTFS: z.string().min(1).optional(),
  // The sandbox agent's folder as the runtime sees it: a node service in a container gives Docker a host path.
  STUDIO_AGENT_DIR: z.string().regex(/^\//, { error: 'STUDIO_AGENT_DIR is an absolute path' }).optional(),
  STUDIO_SECCOMP_PROFILE: z.string().min(1).optional(),
  STUDIO_RUNTIME_DIR: z
    .string()
    .regex(/^\/.{0,60}$/, {
      error: 'STUDIO_RUNTIME_DIR is an absolute path of at most 60 characters (sockets live there)',
    })
    .optional(),
  XDG_RUNTIME_DIR: z.string().optional(),
  STUDIO_RECONCILE_INTERVAL_MS: z.coerce.number().int().min(0).max(86_400_000).default(60_000),
  STUDIO_ORPHAN_GRACE_MS: z.coerce.number().int().min(0).max(86_400_000).default(60_000),
  STUDIO_WORKSPACE_HEADROOM_MB: z.coerce
    .number()
    .int()
    .min(0)
    .max(16 * 1024 * 1024)
    .optional(),
  STUDIO_WORKSPACE_POOL: z.coerce.number().int().min(0).max(16).default(2),
  STUDIO_WARM_POOL: z
    .string()
    .default('1')
    .transform((v, ctx) => {
      const sizes: Record<string, number> = {};
      if (/^\d+$/.test(v.trim())) {
        sizes.docker = Number(v.trim());
        return sizes;
      }
      for (const part of v
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean)) {
        const m = /^(docker|gvisor)=(\d+)$/.exec(part);
        if (!m) {
          ctx.addIssue({ code: 'custom', message: 'use a size (Docker only) or docker=N,gvisor=N' });
          return z.NEVER;
        }
        sizes[m[1] as string] = Number(m[2]);
      }
      return sizes;
    })
    .pipe(z.record(z.string(), z.number().int().min(0).max(32))),
  STUDIO_TRUST_PROXY: bool.default(false),
  // /metrics is not public: on its own listener (an address the operator chooses), or behind a bearer token.
  STUDIO_METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  STUDIO_METRICS_PORT: port.optional(),
  STUDIO_METRICS_TOKEN: z
    .string()
    .min(32, { error: 'STUDIO_METRICS_TOKEN must be at least 32 characters (try: openssl rand -base64 48)' })
    .max(1024)
    .optional(),
  STUDIO_LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  // Graceful shutdown (issue 17): how long SIGTERM waits for running execs and terminals before it ends them.
  STUDIO_DRAIN_SECONDS: z.coerce
    .number()
    .int()
    .min(0)
    .max(3600, { error: 'STUDIO_DRAIN_SECONDS is at most 3600 (an hour); 0 ends running work at once' })
    .default(60),
  // A request's headers and body together must arrive within this time, however slowly they trickle. The
  // largest body (a base64 file at the policy's size, about 21 MiB by default) still fits at ~6 Mbit/s.
  STUDIO_REQUEST_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(600).default(30),
  // Scale-out (issue 23): `all` is single-box Studio (both roles in one process, the default); `api` serves
  // people and forwards each session's calls to its node; `node` runs that node's sandboxes for the API replicas.
  STUDIO_ROLE: z.enum(['all', 'api', 'node']).default('all'),
  // The secret API replicas sign what they forward to nodes with (a Swarm secret): the same on every replica
  // and node, 32 bytes or more.
  STUDIO_CLUSTER_SECRET: z
    .string()
    .min(32, {
      error:
        'STUDIO_CLUSTER_SECRET must be at least 32 characters (try: openssl rand -base64 48 | docker secret create studio_cluster_secret -)',
    })
    .max(4096)
    .optional(),
  // Where API replicas reach this node service (role node): an address inside the cluster, never public.
  STUDIO_NODE_URL: z
    .string()
    .regex(/^https?:\/\/[A-Za-z0-9.[\]:-]+$/, {
      error: 'STUDIO_NODE_URL looks like http://host:port, no path',
    })
    .optional(),
  // The Swarm node this node service runs on (`{{.Node.ID}}` in the stack file), to follow its availability.
  STUDIO_SWARM_NODE_ID: z
    .string()
    .regex(/^[a-z0-9]{1,64}$/, { error: 'STUDIO_SWARM_NODE_ID is a Swarm node id ({{.Node.ID}})' })
    .optional(),
  // Calls in one batched tRPC request: each runs as its own call, so a batch is a way past per-request limits.
  STUDIO_MAX_BATCH_CALLS: z.coerce.number().int().min(1).max(100).default(10),
});

/** The API's configuration, parsed once from the environment. */
export interface Env {
  host: string;
  port: number;
  /** The preview proxy's port (a separate origin); undefined: previews are off. 0: any free port. */
  previewPort: number | undefined;
  /**
   * Preview host names `<port>-<label>.<domain>`: `STUDIO_PREVIEW_DOMAIN` and `STUDIO_PREVIEW_SCHEME` (default
   * https) behind Traefik; unset, `localhost` over http with the preview port in the link (local mode).
   */
  previewHosts: { domain: string; scheme: 'http' | 'https'; withPort: boolean };
  /**
   * The domain E2B SDKs reach sandboxes under (issue 21): `STUDIO_E2B_DOMAIN`, else the preview domain; undefined
   * in local mode (`localhost:<preview port>`). Host names under it are served by the preview listener.
   */
  e2bDomain: string | undefined;
  dataDir: string;
  /**
   * Where backends keep snapshots (`STUDIO_SNAPSHOTS_DIR`, one folder per backend under it); undefined: under the
   * data dir. On a cluster, a shared filesystem every node mounts: any node starts sessions from any snapshot.
   */
  snapshotsDir: string | undefined;
  databaseUrl: string | undefined;
  jwtSecret: string | undefined;
  /** The key secrets are sealed with (`STUDIO_SECRETS_KEY`); unset: `<dataDir>/secrets-key`, made once. */
  secretsKey: string | undefined;
  /**
   * PEM certificates sandboxes and the egress proxy trust beside the public roots (`STUDIO_EGRESS_CA_FILE`): an
   * internal registry mirror's CA, or a corporate TLS-inspecting proxy's.
   */
  egressCaFile: string | undefined;
  adminPassword: string | undefined;
  backends: ('auto' | 'docker' | 'gvisor')[];
  /** Origins allowed to make cookie-authenticated requests (besides the API's own). */
  origins: string[];
  /** Images `sessions.create` accepts; the first is the default. */
  images: string[];
  /**
   * Names the sandboxes this API owns. Unset: derived from the data dir (`<dataDir>/instance-id`, see
   * instance/instance.ts), never from the host name, so two APIs on one host do not remove each other's.
   */
  instanceId: string | undefined;
  /** A short folder for sockets and locks (`STUDIO_RUNTIME_DIR`; default /run/studio as root). */
  runtimeDir: string;
  policy: Policy;
  /** Where the sandbox agent is, as the backends' runtime sees it (`STUDIO_AGENT_DIR`); unset: the package's. */
  agentDir: string | undefined;
  /** gVisor: the root filesystem of `studio-sandbox:latest`; unset: computed once by {@link resolveSandboxRootfs}. */
  sandboxRootfs: string | undefined;
  /** The seccomp profile both backends apply (`STUDIO_SECCOMP_PROFILE`, default the repository's `infra/seccomp/studio.json`). */
  seccompProfile: string;
  /** How often reconciliation with the backends runs (ms); 0: only at start-up. */
  reconcileIntervalMs: number;
  /** How long a sandbox labelled with this instance but unknown to the store lives before it is removed (ms). */
  orphanGraceMs: number;
  /** Bytes of the data dir's disk no workspace may take (creates past it get HOST_DISK_FULL); unset: 5%, at most 1 GiB. */
  workspaceHeadroomBytes: number | undefined;
  /**
   * Workspace images each backend keeps made ahead (preallocated, formatted) at the policy's default disk size:
   * a cold create then only mounts one. Each costs its disk size on the data directory's disk.
   */
  workspacePool: number;
  /** Warm pool size per backend name (sandboxes per image); missing or 0: no pool. Default docker=1. */
  warmPool: Record<string, number>;
  trustProxy: boolean;
  /**
   * Where Prometheus metrics are served: `listen` (`STUDIO_METRICS_HOST`:`STUDIO_METRICS_PORT`), a listener of
   * their own with nothing else on it; `token` (`STUDIO_METRICS_TOKEN`), `/metrics` on the API's port for a
   * bearer of that token. Neither: not served at all.
   */
  metrics: { listen: { host: string; port: number } | null; token: string | null };
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** How long a SIGTERM lets running execs and terminals finish before ending them (ms; `STUDIO_DRAIN_SECONDS`). */
  drainMs: number;
  /**
   * Edge limits (SECURITY.md §5): the time a request's headers and body may take in total (ms;
   * `STUDIO_REQUEST_TIMEOUT_SECONDS`), and the calls one batched tRPC request may carry (`STUDIO_MAX_BATCH_CALLS`).
   */
  edge: { requestTimeoutMs: number; maxBatchCalls: number };
  /** Scale-out (issue 23; docs/scale-out.md): which role this process plays; `all` for single-box Studio. */
  role: 'all' | 'api' | 'node';
  /**
   * Roles `api` and `node`: the cluster's shared secret, `url` where API replicas reach this node (role node) and
   * its Swarm node id. Null for role `all`.
   */
  cluster: { secret: string; nodeUrl: string | null; swarmNodeId: string | null } | null;
}

/**
 * Variables that may instead be given as a file (`<NAME>_FILE`, as Docker and Swarm secrets are mounted): the
 * file's content, without its final newline, is the value. Setting both is an error.
 */
const FILE_VARIABLES = [
  'DATABASE_URL',
  'STUDIO_JWT_SECRET',
  'STUDIO_SECRETS_KEY',
  'STUDIO_ADMIN_PASSWORD',
  'STUDIO_CLUSTER_SECRET',
] as const;

function withFileVariables(source: Record<string, string | undefined>): Record<string, string | undefined> {
  const out = { ...source };
  for (const name of FILE_VARIABLES) {
    const file = source[`${name}_FILE`];
    if (file === undefined || file === '') continue;
    if (source[name] !== undefined && source[name] !== '') {
      throw new Error(`invalid configuration: set ${name} or ${name}_FILE, not both`);
    }
    try {
      out[name] = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (error) {
      throw new Error(
        `invalid configuration: ${name}_FILE: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); check the path and that the secret is mounted`,
      );
    }
  }
  return out;
}

/**
 * Parses `source` (default `process.env`) into an {@link Env}. Throws one Error listing every bad variable and
 * what to change; never echoes a secret's value.
 */
export function parseEnv(given: Record<string, string | undefined> = process.env): Env {
  const source = withFileVariables(given);
  const picked: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = source[key];
    if (value !== undefined && value !== '') picked[key] = value;
  }
  const parsed = schema.safeParse(picked);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${String(i.path[0] ?? '(env)')}: ${i.message}`).join('; ');
    throw new Error(`invalid configuration: ${detail}`);
  }
  const e = parsed.data;
  const previewDomain = e.STUDIO_PREVIEW_DOMAIN ?? 'localhost';
  if (e.STUDIO_PREVIEW_DOMAIN !== undefined && e.STUDIO_ORIGINS.length === 0) {
    throw new Error(
      'invalid configuration: STUDIO_PREVIEW_DOMAIN needs STUDIO_ORIGINS (the IDE origin, e.g. https://studio.example.com), so start-up can check that previews are on another site',
    );
  }
  // User content on a site of its own (SECURITY.md §3): refuse a preview domain that shares a site with the IDE
  // or the API, whose cookies its pages would then carry and could overwrite.
  const problem = previewSiteProblem(previewDomain, [...e.STUDIO_ORIGINS, e.STUDIO_HOST]);
  if (problem !== null) {
    const variable = e.STUDIO_PREVIEW_DOMAIN === undefined ? 'STUDIO_ORIGINS' : 'STUDIO_PREVIEW_DOMAIN';
    throw new Error(`invalid configuration: ${variable}: ${problem}`);
  }
  const cluster = e.STUDIO_ROLE === 'all' ? null : clusterConfig(e);
  let policy: Policy;
  try {
    policy = parsePolicy(e.STUDIO_POLICY === undefined ? undefined : JSON.parse(e.STUDIO_POLICY));
  } catch (error) {
    throw new Error(`invalid configuration: STUDIO_POLICY: ${(error as Error).message}`);
  }
  return {
    host: e.STUDIO_HOST,
    port: e.STUDIO_PORT,
    previewPort: e.STUDIO_PREVIEW_PORT,
    previewHosts:
      e.STUDIO_PREVIEW_DOMAIN === undefined
        ? { domain: 'localhost', scheme: e.STUDIO_PREVIEW_SCHEME ?? 'http', withPort: true }
        : { domain: e.STUDIO_PREVIEW_DOMAIN, scheme: e.STUDIO_PREVIEW_SCHEME ?? 'https', withPort: false },
    e2bDomain: e.STUDIO_E2B_DOMAIN ?? e.STUDIO_PREVIEW_DOMAIN,
    dataDir: e.STUDIO_DATA_DIR ?? `${REPO_ROOT}.data`,
    snapshotsDir: e.STUDIO_SNAPSHOTS_DIR,
    databaseUrl: e.DATABASE_URL,
    jwtSecret: e.STUDIO_JWT_SECRET,
    secretsKey: e.STUDIO_SECRETS_KEY,
    egressCaFile: e.STUDIO_EGRESS_CA_FILE,
    adminPassword: e.STUDIO_ADMIN_PASSWORD,
    backends: e.STUDIO_BACKENDS,
    origins: e.STUDIO_ORIGINS,
    images: e.STUDIO_IMAGES,
    instanceId: e.STUDIO_INSTANCE_ID,
    runtimeDir: e.STUDIO_RUNTIME_DIR ?? defaultRuntimeDir(e.XDG_RUNTIME_DIR),
    policy,
    sandboxRootfs: e.STUDIO_SANDBOX_ROOTFS,
    agentDir: e.STUDIO_AGENT_DIR,
    seccompProfile: e.STUDIO_SECCOMP_PROFILE ?? `${REPO_ROOT}infra/seccomp/studio.json`,
    reconcileIntervalMs: e.STUDIO_RECONCILE_INTERVAL_MS,
    orphanGraceMs: e.STUDIO_ORPHAN_GRACE_MS,
    workspaceHeadroomBytes:
      e.STUDIO_WORKSPACE_HEADROOM_MB === undefined ? undefined : e.STUDIO_WORKSPACE_HEADROOM_MB * 1024 * 1024,
    workspacePool: e.STUDIO_WORKSPACE_POOL,
    warmPool: e.STUDIO_WARM_POOL,
    trustProxy: e.STUDIO_TRUST_PROXY,
    metrics: {
      listen:
        e.STUDIO_METRICS_PORT === undefined
          ? null
          : { host: e.STUDIO_METRICS_HOST, port: e.STUDIO_METRICS_PORT },
      token: e.STUDIO_METRICS_TOKEN ?? null,
    },
    logLevel: e.STUDIO_LOG_LEVEL,
    drainMs: e.STUDIO_DRAIN_SECONDS * 1000,
    edge: {
      requestTimeoutMs: e.STUDIO_REQUEST_TIMEOUT_SECONDS * 1000,
      maxBatchCalls: e.STUDIO_MAX_BATCH_CALLS,
    },
    role: e.STUDIO_ROLE,
    cluster,
  };
}

/**
 * Roles `api` and `node` share one PostgreSQL store and the keys every replica and node must agree on (a login
 * made through one replica is checked on a node; a secret sealed on one is opened on another).
 */
function clusterConfig(e: z.output<typeof schema>): NonNullable<Env['cluster']> {
  const role = `STUDIO_ROLE=${e.STUDIO_ROLE}`;
  const missing = [
    e.DATABASE_URL === undefined
      ? 'DATABASE_URL (PostgreSQL: every replica and node shares one store)'
      : null,
    e.STUDIO_CLUSTER_SECRET === undefined ? 'STUDIO_CLUSTER_SECRET or STUDIO_CLUSTER_SECRET_FILE' : null,
    e.STUDIO_JWT_SECRET === undefined ? 'STUDIO_JWT_SECRET or STUDIO_JWT_SECRET_FILE' : null,
    e.STUDIO_SECRETS_KEY === undefined ? 'STUDIO_SECRETS_KEY or STUDIO_SECRETS_KEY_FILE' : null,
  ].filter((m): m is string => m !== null);
  if (missing.length > 0) {
    throw new Error(
      `invalid configuration: ${role} needs ${missing.join(', ')} (see docs/scale-out.md; the stack file in infra/swarm sets them from Swarm secrets)`,
    );
  }
  try {
    checkNodeSecret(Buffer.from(e.STUDIO_CLUSTER_SECRET as string, 'utf8'));
  } catch (error) {
    throw new Error(`invalid configuration: STUDIO_CLUSTER_SECRET: ${(error as Error).message}`);
  }
  return {
    secret: e.STUDIO_CLUSTER_SECRET as string,
    // Unset: the address the node listens on (its host name when it listens on every interface).
    nodeUrl: e.STUDIO_NODE_URL ?? null,
    swarmNodeId: e.STUDIO_SWARM_NODE_ID ?? null,
  };
}

// Unix socket paths may not exceed 108 bytes and a data dir may be deep: sockets and locks go here instead.
function defaultRuntimeDir(xdg: string | undefined): string {
  const uid = process.getuid?.() ?? 0;
  if (uid === 0) return '/run/studio';
  return xdg && xdg.length <= 40 ? `${xdg}/studio` : `/tmp/studio-${uid}`;
}

/**
 * The gVisor root filesystem of `studio-sandbox:latest`: `STUDIO_SANDBOX_ROOTFS`, else what
 * `bash infra/image/build.sh --print-rootfs` prints (computed once; it does not build anything). A rootfs not
 * built yet is still named (the script exits 1 after printing it): the gVisor backend's `available()` then
 * says to build it.
 */
export function resolveSandboxRootfs(env: Env): string {
  if (env.sandboxRootfs) return env.sandboxRootfs;
  rootfsCache ??= printRootfs();
  return rootfsCache;
}

function printRootfs(): string {
  let printed: string;
  try {
    printed = execFileSync('bash', [`${REPO_ROOT}infra/image/build.sh`, '--print-rootfs'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      timeout: 30_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    printed = String((error as { stdout?: unknown }).stdout ?? '');
    if (printed.trim() === '') {
      throw new Error(
        `cannot locate the sandbox rootfs: set STUDIO_SANDBOX_ROOTFS or run bash infra/image/build.sh (${(error as Error).message.split('\n')[0]})`,
        { cause: error },
      );
    }
  }
  return printed.trim();
}

let rootfsCache: string | undefined;
let cached: Env | undefined;

/** The process's configuration, read from `process.env` on first use and never again. */
export function loadEnv(): Env {
  cached ??= parseEnv(process.env);
  return cached;
}
