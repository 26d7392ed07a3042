import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Db, openDb, Store } from '@studio/db';
import type { IsolationBackend } from '@studio/isolation';
import { DockerBackend } from '@studio/isolation-docker';
import { GVisorBackend, RootfsBuilder } from '@studio/isolation-gvisor';
import { createPolicySchemas, parseSecretHeader, type RateLimiter } from '@studio/policy';
import { AGENT_DIR } from '@studio/sandbox-agent';
import { Auth, ensureAdmin, loadJwtKey } from './auth/auth.ts';
import { NodeReporter } from './cluster/node-reporter.ts';
import type { AppDeps } from './core/context.ts';
import { Drain } from './core/drain.ts';
import { createLogger, type Logger } from './core/logger.ts';
import { splitPem } from './egress/certificates.ts';
import { EgressGateway, type SecretSource } from './egress/egress-gateway.ts';
import { type EgressEvent, EgressProxy, type EgressProxyOptions } from './egress/egress-proxy.ts';
import { StudioCa } from './egress/studio-ca.ts';
import { type Env, resolveSandboxRootfs } from './env.ts';
import { ExecRegistry } from './exec/exec-registry.ts';
import { claimInstance, dataDirInstanceId, leaseInstance, lockDataDir } from './instance/instance.ts';
import { PreviewGrants } from './preview/preview.ts';
import { EventBus } from './realtime/event-bus.ts';
import { EventHistory } from './realtime/event-history.ts';
import { FileWatches } from './realtime/file-watches.ts';
import { Recorder } from './recording/recorder.ts';
import { loadSecretsKey, SecretVault } from './secrets/secret-vault.ts';
import { defaultResources, SessionManager } from './sessions/session-manager.ts';
import { WarmPool } from './sessions/warm-pool.ts';
import { TemplateManager, templateRootfs } from './templates/template-manager.ts';

/** Options for {@link createApp}. Everything but `env` can be injected (tests pass backends and a database). */
export interface CreateAppOptions {
  env: Env;
  /** The isolation backends; default built from `env.backends`. */
  backends?: IsolationBackend[];
  /** The database; default PostgreSQL at `env.databaseUrl`, else PGlite in `<dataDir>/pglite`. */
  db?: Db;
  logger?: Logger;
  /** Extra labels on every sandbox (tests: `studio.test`). */
  sandboxLabels?: Record<string, string>;
  loginLimiter?: RateLimiter;
  createLimiter?: RateLimiter;
  /**
   * Lock the data dir and claim the instance id for this process (default true). Off only for tests that run
   * many APIs on one shared test data dir with an in-memory store.
   */
  claim?: boolean;
  /**
   * Called if another process takes this API's instance id over in the store (this one stalled past its lease).
   * Default: logged. `main.ts` exits, so two processes never reconcile the same sandboxes.
   */
  onInstanceLost?: (message: string) => void;
  /** The egress proxy's resolver, dialler and host addresses (tests: their own network); default the system's. */
  egress?: Pick<EgressProxyOptions, 'resolve' | 'dial' | 'ownAddresses'> & {
    /** PEM certificates trusted beside the public roots, as `STUDIO_EGRESS_CA_FILE` (tests: their test CA). */
    extraCaPem?: string;
  };
}

/** The configuration with the instance id resolved (given, or derived from the data dir). */
export type ResolvedEnv = Env & { instanceId: string };

/** The wired API, not yet listening. */
export interface App {
  deps: AppDeps;
  env: ResolvedEnv;
  /** Role `node`: its heartbeat in the store, started once the server listens. */
  node: NodeReporter | null;
  /** Set when this start created the first administrator. */
  bootstrap: { username: string; password: string; generated: boolean } | null;
  close(): Promise<void>;
}

/**
 * The backends named by STUDIO_BACKENDS, constructed (not yet checked). `auto` means every backend this API
 * knows how to build (Docker and gVisor); {@link selectBackends} then keeps those that are available.
 */
export function backendsFromEnv(env: ResolvedEnv): IsolationBackend[] {
  const names = new Set(env.backends.includes('auto') ? ['docker', 'gvisor'] : env.backends);
  const backends: IsolationBackend[] = [];
  // Pool images have the shape a session gets when it asks for no resources.
  const workspacePool = {
    size: env.workspacePool,
    sizeBytes: env.policy.sandbox.diskBytes,
    inodes: env.policy.sandbox.inodes,
  };
  for (const name of names) {
    if (name === 'docker') {
      backends.push(
        new DockerBackend({
          dataDir: join(env.dataDir, 'docker'),
          ...(env.snapshotsDir === undefined ? {} : { snapshotsDir: join(env.snapshotsDir, 'docker') }),
          ...(env.workspaceHeadroomBytes === undefined
            ? {}
            : { workspaceHeadroomBytes: env.workspaceHeadroomBytes }),
          instanceId: env.instanceId,
          seccompProfile: env.seccompProfile,
          limits: env.policy.sandbox,
          workspacePool,
          ...(env.agentDir === undefined ? {} : { agentDir: env.agentDir }),
        }),
      );
    } else if (name === 'gvisor') {
      backends.push(
        new GVisorBackend({
          dataDir: join(env.dataDir, 'gvisor'),
          ...(env.snapshotsDir === undefined ? {} : { snapshotsDir: join(env.snapshotsDir, 'gvisor') }),
          ...(env.workspaceHeadroomBytes === undefined
            ? {}
            : { workspaceHeadroomBytes: env.workspaceHeadroomBytes }),
          stateDir: gvisorStateDir(env),
          instanceId: env.instanceId,
          seccompProfile: env.seccompProfile,
          limits: env.policy.sandbox,
          workspacePool,
          // Resolved on first use; when it cannot be, available() reports why, naming the fix.
          images: () => {
            const rootfs = resolveSandboxRootfs(env);
            return Object.fromEntries(env.images.map((i) => [i, rootfs]));
          },
          // Templates built since (issue 19), from where the template manager keeps them.
          resolveImage: (image) => templateRootfs(templatesDir(env), image),
          ...(env.agentDir === undefined ? {} : { agentDir: env.agentDir }),
        }),
      );
    }
  }
  return backends;
}

/** Where templates' builds are kept (`<dataDir>/templates`). */
export const templatesDir = (env: Pick<Env, 'dataDir'>) => join(env.dataDir, 'templates');

/**
 * runsc's state folder (`--root`): it holds the sandboxes' control sockets, so it lives in the short runtime dir
 * (a socket path may not exceed 108 bytes). A data dir from an earlier release keeps its old state folder while
 * it holds state, so sandboxes running across the upgrade stay reachable.
 */
function gvisorStateDir(env: ResolvedEnv): string {
  const legacy = join(env.dataDir, 'gvisor', 'runsc');
  if (existsSync(legacy) && readdirSync(legacy).length > 0) return legacy;
  return join(env.runtimeDir, env.instanceId, 'runsc');
}

/**
 * Checks each backend once and logs one line per backend (available, or why not). With `auto`, the unavailable
 * ones are dropped (closed); with an explicit list they are kept (reported by `backends.list`, refused on
 * create with the reason).
 */
export async function selectBackends(
  env: Env,
  backends: IsolationBackend[],
  logger: Logger,
): Promise<IsolationBackend[]> {
  const auto = env.backends.includes('auto');
  const kept: IsolationBackend[] = [];
  for (const b of backends) {
    const a = await b.available().catch((e: unknown) => ({ ok: false as const, reason: String(e) }));
    if (a.ok) {
      logger.info('backend available', { backend: b.name });
      kept.push(b);
    } else if (auto) {
      logger.info('backend not available, skipped', { backend: b.name, reason: a.reason });
      await b.close().catch(() => undefined);
    } else {
      logger.warn('backend unavailable', { backend: b.name, reason: a.reason });
      kept.push(b);
    }
  }
  if (kept.length === 0) {
    logger.warn(
      'no sandbox backend is available: install Docker (https://docs.docker.com/engine/install/) or gVisor (runsc, as root)',
      {},
    );
  }
  return kept;
}

/** Opens the store (running migrations), loads the signing key, creates the first admin, wires the services. */
export async function createApp(options: CreateAppOptions): Promise<App> {
  const logger = options.logger ?? createLogger({ level: options.env.logLevel });
  const releases: (() => void)[] = [];
  const release = () => {
    for (const r of releases.splice(0).reverse()) r();
  };
  const claim = options.claim ?? true;
  // Before the store opens: an embedded store must never be opened by two processes.
  if (claim) releases.push(lockDataDir(options.env.dataDir));
  let db: Db | undefined;
  let store: Store;
  let env: ResolvedEnv;
  let releaseLease: () => Promise<void> = async () => undefined;
  try {
    db =
      options.db ??
      (await openDb({
        databaseUrl: options.env.databaseUrl,
        pgliteDir: join(options.env.dataDir, 'pglite'),
        // A long-running server: initdb's memory must not stay resident (issue 17, item 6).
        initApart: true,
      }));
    store = await Store.open(db);
    const instanceId =
      options.env.instanceId ??
      (await dataDirInstanceId(options.env.dataDir, async (legacy) =>
        (await store.listLiveSessions()).some((s) => s.instanceId === legacy),
      ));
    env = { ...options.env, instanceId };
    if (claim) {
      releases.push(claimInstance({ instanceId, runtimeDir: env.runtimeDir }));
      releaseLease = await leaseInstance(store, {
        instanceId,
        dataDir: env.dataDir,
        onLost: options.onInstanceLost ?? ((message) => logger.error('instance id lost', { message })),
      });
    }
  } catch (error) {
    await db?.close().catch(() => undefined);
    release();
    throw error;
  }
  // The first admin is made by whoever serves people (single box, a replica): a node service that found the store
  // empty first would make one with a password only its own log shows.
  const admin: Awaited<ReturnType<typeof ensureAdmin>> =
    env.role === 'node' ? { created: false } : await ensureAdmin(store, env.adminPassword);
  const key = loadJwtKey({ secret: env.jwtSecret, dataDir: env.dataDir });
  const auth = new Auth({
    store,
    key,
    ...(options.loginLimiter ? { loginLimiter: options.loginLimiter } : {}),
  });
  // An API replica runs no sandboxes: every session's calls go to its node (issue 23, cluster/forwarder.ts).
  const backends =
    options.backends ?? (env.role === 'api' ? [] : await selectBackends(env, backendsFromEnv(env), logger));
  const pool = new WarmPool({
    backends,
    sizes: env.warmPool,
    images: env.images,
    resources: defaultResources(env.policy),
    instanceId: env.instanceId,
    ...(options.sandboxLabels ? { labels: options.sandboxLabels } : {}),
    logger,
    owners: {
      record: (id, backend) =>
        store.recordSandbox({ id, backend, instanceId: env.instanceId, sessionId: null }),
      forget: (id) => store.forgetSandbox(id),
    },
  });
  // Session recording (docs/recording.md): every event of the bus, and terminals (server.ts), under the data dir.
  const recorder = new Recorder({
    dir: join(env.dataDir, 'recordings'),
    limits: env.policy.recording,
    logger,
  });
  // Events are kept in the store too, so a session opened later shows what was done before (issue 22).
  const events = new EventBus({ history: new EventHistory({ store, logger }), sinks: [recorder] });
  const egressEvent = (e: EgressEvent) => {
    events.publish(
      e.sessionId,
      { kind: 'sandbox', userId: e.ownerId, name: 'sandbox' },
      {
        type: 'egress',
        via: e.via,
        host: e.host,
        port: e.port,
        allowed: e.allowed,
        reason: e.reason ?? null,
        message: e.message ?? null,
        bytesOut: e.bytesOut,
        bytesIn: e.bytesIn,
        durationMs: e.durationMs,
        secrets: e.secrets ?? [],
      },
    );
    store
      .audit({
        action: 'egress.connection',
        outcome: e.allowed ? 'success' : 'denied',
        actorId: null,
        target: e.sessionId,
        details: {
          actor: 'sandbox',
          via: e.via,
          host: e.host,
          port: e.port,
          ...(e.reason ? { reason: e.reason } : {}),
          bytesOut: e.bytesOut,
          bytesIn: e.bytesIn,
          ...(e.secrets ? { secrets: e.secrets } : {}),
        },
      })
      .catch((error: unknown) => logger.warn('egress audit record failed', { error }));
  };
  const vault = new SecretVault(loadSecretsKey({ secret: env.secretsKey, dataDir: env.dataDir }));
  const studioCa = await StudioCa.load(env.dataDir);
  const { extraCaPem, ...egressOptions } = options.egress ?? {};
  const extraCa = [
    ...(env.egressCaFile === undefined ? [] : splitPem(readFileSync(env.egressCaFile, 'utf8'))),
    ...(extraCaPem === undefined ? [] : splitPem(extraCaPem)),
  ];
  const egressProxy = new EgressProxy({
    limits: env.policy.egress,
    ...egressOptions,
    onEvent: egressEvent,
    logger,
    intercept: { leafFor: (host) => studioCa.leafFor(host), upstreamCa: extraCa },
  });
  const secretSource: SecretSource = {
    placeholder: (sessionId, name) => vault.placeholder(sessionId, name),
    granted: async (ownerId, sessionId, names) =>
      (await store.listSecrets(ownerId, names)).map((s) => ({
        name: s.name,
        hosts: s.hosts,
        header: parseSecretHeader(s.header),
        placeholder: vault.placeholder(sessionId, s.name),
        value: vault.open(ownerId, s.name, s.sealed),
      })),
  };
  const dockerBackend = backends.find((b): b is DockerBackend => b instanceof DockerBackend);
  const buildEgress = new EgressProxy({
    limits: env.policy.egress,
    ...egressOptions,
    onEvent: (e) => {
      templates.noteEgress(e);
      store
        .audit({
          action: 'egress.connection',
          outcome: e.allowed ? 'success' : 'denied',
          actorId: null,
          target: e.sessionId,
          details: { actor: 'template-build', via: e.via, host: e.host, port: e.port, bytesIn: e.bytesIn },
        })
        .catch((error: unknown) => logger.warn('egress audit record failed', { error }));
    },
    logger,
  });
  const runsAsRoot = process.getuid?.() === 0;
  const templates: TemplateManager = new TemplateManager({
    store,
    policy: env.policy,
    dir: templatesDir(env),
    ...(runsAsRoot
      ? {
          builder: new RootfsBuilder({
            dataDir: join(env.dataDir, 'builder'),
            agentDir: AGENT_DIR,
            seccompProfile: env.seccompProfile,
          }),
        }
      : { builderMissing: 'template builds run in gVisor, which needs Studio to run as root' }),
    ...(dockerBackend ? { docker: dockerBackend } : {}),
    operatorImages: env.images,
    operatorRootfs: () => resolveSandboxRootfs(env),
    egress: buildEgress,
    trustPem: extraCa,
    logger,
    // A cluster's node records its builds as its own (replicas show their logs, and fail them if it is lost).
    ...(env.role === 'node' && env.cluster !== null ? { instanceId: env.instanceId } : {}),
  });
  // Then every 10 minutes: what failed builds left, and images no template names any more.
  await templates
    .reconcile(10 * 60_000)
    .catch((error: unknown) => logger.warn('template reconciliation failed', { error }));
  const sessions = new SessionManager({
    templates,
    egress: new EgressGateway({
      proxy: egressProxy,
      logger,
      trust: { studioCa: studioCa.certPem, extra: extraCa },
      secrets: secretSource,
    }),
    store,
    backends,
    ...(pool.enabled ? { pool } : {}),
    orphanGraceMs: env.orphanGraceMs,
    policy: env.policy,
    instanceId: env.instanceId,
    sharedSnapshots: env.snapshotsDir !== undefined,
    images: env.images,
    logger,
    ...(options.sandboxLabels ? { labels: options.sandboxLabels } : {}),
    ...(options.createLimiter ? { createLimiter: options.createLimiter } : {}),
    // A sandbox that died of a resource limit: its session's watchers learn it at once.
    onStopped: (sessionId, reason) =>
      events.publish(sessionId, null, { type: 'session.status', state: 'stopped', reason }),
    // A session failed by the server (its workspace went read-only): watchers learn why.
    onFailed: (sessionId, reason) =>
      events.publish(sessionId, null, { type: 'session.status', state: 'failed', reason }),
    // Paused when idle, resumed on use, or stopped by a restore that failed (issue 20).
    onStatus: (sessionId, state, reason) =>
      events.publish(sessionId, null, { type: 'session.status', state, reason }),
  });
  const deps: AppDeps = {
    store,
    auth,
    sessions,
    policy: env.policy,
    schemas: createPolicySchemas(env.policy),
    logger,
    events,
    fileWatches: new FileWatches({ sessions, events, logger }),
    // A node's exec ids name it, so API replicas send exec.stream and the rest to the node that runs the exec.
    execs: new ExecRegistry({ nodeId: env.role === 'node' ? env.instanceId : null }),
    previews: new PreviewGrants({ hostMode: env.previewHosts }),
    origins: env.origins,
    trustProxy: env.trustProxy,
    drain: new Drain(),
    vault,
    templates,
    recorder,
  };
  // Recordings of sessions destroyed without the bus hearing of it (see Recorder.sweep) go too; only by the
  // process that owns the data dir (tests sharing one dir with in-memory stores would delete each other's).
  if (claim) {
    recorder.sweep(async (id) => ((await store.getSessionById(id))?.state ?? 'destroyed') === 'destroyed');
  }
  // A node service reports itself to the API replicas once it listens (server.ts starts it).
  const node =
    env.role === 'node' && env.cluster !== null
      ? new NodeReporter({
          store,
          id: env.instanceId,
          backends: async () => (await sessions.listBackends()).filter((b) => b.available).map((b) => b.name),
          templates: () => templates.held(),
          logger,
        })
      : null;
  return {
    deps,
    env,
    node,
    bootstrap: admin.created
      ? { username: admin.username, password: admin.password, generated: admin.generated }
      : null,
    async close() {
      await node?.drain();
      deps.fileWatches.close();
      await templates.close();
      egressProxy.close();
      buildEgress.close();
      await sessions.close();
      await recorder.close();
      await releaseLease();
      await events.history?.close();
      await store.close();
      release();
    },
  };
}
