import {
  type AuditEvent,
  isStoreError,
  type SandboxOwner,
  type SessionRecord,
  type SessionResources,
  type SnapshotRecord,
  type Store,
} from '@studio/db';
import {
  type BackendCapabilities,
  type IsolationBackend,
  isIsolationError,
  newSandboxId,
  newSnapshotId,
  type Sandbox,
  type SandboxInfo,
  type SandboxStats,
} from '@studio/isolation';
import {
  createRateLimiter,
  DEFAULT_SESSION_CREATE_LIMIT,
  type NetworkSettings,
  NO_NETWORK,
  type Policy,
  type RateLimiter,
  rateLimitedError,
  type SessionCreateInput,
} from '@studio/policy';
import { AppError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Logger } from '../core/logger.ts';
import type { EgressGateway } from '../egress/egress-gateway.ts';
import type { TemplateRuntime } from '../templates/recipe.ts';
import type { SessionTemplate } from '../templates/template-manager.ts';
import { startTemplate, withTemplateRuntime } from '../templates/template-runtime.ts';
import { POOL_LABEL, POOL_VALUE, type WarmPool } from './warm-pool.ts';

const MiB = 1024 * 1024;

/** The audit context of what Studio does on its own (reconciliation, sweeps). */
const SYSTEM = { actorId: null, ip: null, requestId: null } as const;

/** How long a backend's ok from available() is reused when picking one for a create (ms). */
const AVAILABLE_CACHE_MS = 5_000;

/** Request facts recorded with audit events. */
export interface AuditContext {
  actorId: string | null;
  ip: string | null;
  requestId: string | null;
}

/** The resources of a session created without `resources` (what the warm pool creates). */
export function defaultResources(policy: Policy): SessionResources {
  const s = policy.sandbox;
  return {
    memoryBytes: s.memoryBytes,
    cpus: s.cpus,
    pids: s.pids,
    diskBytes: s.diskBytes,
    inodes: s.inodes,
    tmpBytes: Math.min(s.tmpBytes, s.memoryBytes),
  };
}

/** What {@link SessionManager.reconcile} did (session ids, orphan sandbox ids, backend names). */
export interface ReconcileReport {
  adopted: string[];
  stopped: string[];
  failed: string[];
  /** `creating` sessions whose sandbox a dead process had finished making: now `running`. */
  completed: string[];
  /** `creating` sessions a dead process left unfinished: their sandbox removed, now `failed` with the reason. */
  rolledBack: string[];
  /** `destroying` sessions a dead process left: destroy finished, now `destroyed`. */
  destroyed: string[];
  /** Sandboxes with an owner record but no live owner (a crash mid-create or mid-destroy), removed. */
  leftoversRemoved: string[];
  orphansRemoved: string[];
  /** Fork captures (unnamed snapshots) a crash mid-fork left behind, removed from their backend and the store. */
  capturesRemoved: string[];
  backendsDown: string[];
}

/** What `backends.list` reports for one backend. */
export interface BackendInfo {
  name: string;
  available: boolean;
  /** Why it is not available, naming the fix. */
  reason: string | null;
  capabilities: BackendCapabilities;
}

/** Options for {@link SessionManager}. */
export interface SessionManagerOptions {
  store: Store;
  /** The enabled backends, in order of preference for `backend: 'auto'`. */
  backends: readonly IsolationBackend[];
  policy: Policy;
  /** This API instance (recorded on sessions; backends label sandboxes with it). */
  instanceId: string;
  /**
   * Snapshots are on a filesystem every node mounts (`STUDIO_SNAPSHOTS_DIR`): a workspace snapshot another node
   * took starts sessions here too (how a lost node's sessions are restored elsewhere).
   */
  sharedSnapshots?: boolean;
  /** Images a client may ask for. */
  images: readonly string[];
  /** Extra labels on every sandbox (tests add `studio.test`). */
  labels?: Record<string, string>;
  /**
   * Orphans (sandboxes of this instance unknown to the store) and leftovers (recorded sandboxes no live session or
   * pool holds) are removed once seen this long (ms). Default 60 s.
   */
  orphanGraceMs?: number;
  /**
   * A `creating` or `destroying` session this process has had in hand longer than this (ms) is completed or
   * rolled back by reconciliation all the same (a hung runtime call). Ones no process has in hand are settled at
   * once. Default 10 minutes.
   */
  transitionBoundMs?: number;
  /** The warm pool `create` claims from; none: every create is cold. */
  pool?: WarmPool;
  /** Session creations per user; default the policy's 10 a minute. */
  createLimiter?: RateLimiter;
  /** Called when a session stops on its own (its sandbox died of a resource limit), with the reason. */
  onStopped?: (sessionId: string, reason: string) => void;
  logger: Logger;
  /** Told when reconciliation marks a session failed (the app publishes it as a `session.status` event). */
  onFailed?: (sessionId: string, reason: string) => void;
  /**
   * Told when a session is paused or resumed by Studio itself (automatic pause when idle, transparent resume on
   * use, a restore that failed), with why; the app publishes it as a `session.status` event.
   */
  onStatus?: (sessionId: string, state: 'paused' | 'running' | 'stopped', reason: string) => void;
  /** Puts every sandbox handle behind the egress proxy (issue 18); none: programs get no proxy endpoint. */
  egress?: EgressGateway;
  /** Templates (issue 19): what a session's `template` names; none: only the operator's `images`. */
  templates?: SessionTemplates;
}

/** What sessions need of templates: a create's template resolved, and a session's runtime settings. */
export interface SessionTemplates {
  forSession(
    userId: string,
    input: { template?: string | undefined; image?: string | undefined },
  ): Promise<SessionTemplate>;
  runtimeOf(templateId: string | null): Promise<TemplateRuntime | undefined>;
}

/**
 * Sessions: their records in the store and their sandboxes in a backend, kept in step. States go
 * `creating → running ⇄ stopped → destroyed`, or `failed` with a reason; every transition is a compare-and-set
 * in the store, so racing calls cannot both win. Every method takes the caller's user id and sees only that
 * user's sessions; another user's session id is NOT_FOUND (and the attempt is audited).
 */
export class SessionManager {
  readonly #o: SessionManagerOptions;
  readonly #backends: Map<string, IsolationBackend>;
  readonly #handles = new Map<string, Sandbox>();
  readonly #lastTouch = new Map<string, number>();
  readonly #createLimiter: RateLimiter;
  #sweeper: NodeJS.Timeout | undefined;
  #reconciler: NodeJS.Timeout | undefined;
  #reconciling: Promise<ReconcileReport> | undefined;
  /** Sessions this process is starting (sandbox started, `running` not yet recorded). */
  readonly #starts = new Set<string>();
  /** Orphan sandbox id → when reconciliation first saw it (ms). */
  readonly #orphansSeen = new Map<string, number>();
  /** Backends whose last availability check failed (a daemon down or restarting). */
  readonly #down = new Set<string>();
  /** Creates this process has in hand, by session id (settled, never rejecting). */
  readonly #creates = new Map<string, Promise<unknown>>();
  /** Destroys this process has in hand, by session id. */
  readonly #destroys = new Set<string>();
  /** Pool members between their claim and their owner record naming the session. */
  readonly #assigning = new Set<string>();
  /** Sessions created by this process from the warm pool. */
  readonly #pooled = new Set<string>();
  /** Why a session stopped on its own, until it starts again (the audit log keeps it for good). */
  readonly #stopReasons = new Map<string, string>();
  /** Sandboxes whose workspace filesystem went read-only, as of the last reconciliation (by backend). */
  readonly #readOnly = new Map<string, Set<string>>();
  /** Pauses and resumes in hand, by session id: one at a time per session, and a use waits for them. */
  readonly #transitions = new Map<string, Promise<unknown>>();

  constructor(options: SessionManagerOptions) {
    this.#o = options;
    this.#backends = new Map(options.backends.map((b) => [b.name, b]));
    this.#createLimiter = options.createLimiter ?? createRateLimiter(DEFAULT_SESSION_CREATE_LIMIT);
  }

  get policy(): Policy {
    return this.#o.policy;
  }

  async listBackends(): Promise<BackendInfo[]> {
    return Promise.all(
      [...this.#backends.values()].map(async (b) => {
        const a = await b.available().catch((e: unknown) => ({ ok: false as const, reason: String(e) }));
        if (!a.ok) this.#availableAt.delete(b.name);
        return {
          name: b.name,
          available: a.ok,
          reason: a.ok ? null : a.reason,
          capabilities: b.capabilities(),
        };
      }),
    );
  }

  /**
   * Readiness: at least one backend is available. `readOnlyWorkspaces` (from the last reconciliation) counts
   * sandboxes whose workspace went read-only: the API is degraded, not down, as other sessions still work.
   */
  async ready(): Promise<{ ok: boolean; backends: BackendInfo[]; readOnlyWorkspaces: number }> {
    const backends = await this.listBackends();
    return { ok: backends.some((b) => b.available), backends, readOnlyWorkspaces: this.readOnlyWorkspaces };
  }

  /** Sandboxes of this instance whose workspace filesystem went read-only, as of the last reconciliation. */
  get readOnlyWorkspaces(): number {
    let n = 0;
    for (const ids of this.#readOnly.values()) n += ids.size;
    return n;
  }

  // When each backend last answered available() with ok, for picking one on create: available() pings Docker or
  // runs `runsc --version`, which should not sit on every create's path (issue 15, item 3). Readiness and
  // reconciliation still ask every time, and forget the entry when a backend is down.
  readonly #availableAt = new Map<string, number>();

  async #available(backend: IsolationBackend): Promise<{ ok: true } | { ok: false; reason: string }> {
    const at = this.#availableAt.get(backend.name);
    if (at !== undefined && Date.now() - at < AVAILABLE_CACHE_MS) return { ok: true };
    const a = await backend.available();
    if (a.ok) this.#availableAt.set(backend.name, Date.now());
    else this.#availableAt.delete(backend.name);
    return a;
  }

  async #pickBackend(requested: SessionCreateInput['backend']): Promise<IsolationBackend> {
    const enabled = [...this.#backends.keys()].join(', ') || 'none';
    if (requested !== 'auto') {
      const backend = this.#backends.get(requested);
      if (!backend) {
        throw new AppError(
          'BACKEND_UNAVAILABLE',
          `backend ${requested} is not enabled on this server (enabled: ${enabled}); ask for 'auto' or one of those`,
        );
      }
      const a = await this.#available(backend);
      if (!a.ok)
        throw new AppError('BACKEND_UNAVAILABLE', `backend ${requested} is unavailable: ${a.reason}`);
      return backend;
    }
    const reasons: string[] = [];
    for (const backend of this.#backends.values()) {
      const a = await this.#available(backend);
      if (a.ok) return backend;
      reasons.push(`${backend.name}: ${a.reason}`);
    }
    throw new AppError(
      'BACKEND_UNAVAILABLE',
      `no sandbox backend is available (${reasons.join('; ') || `enabled: ${enabled}`})`,
    );
  }

  #resources(input: SessionCreateInput['resources']): SessionResources {
    const s = this.#o.policy.sandbox;
    const memoryBytes = input?.memoryMb !== undefined ? input.memoryMb * MiB : s.memoryBytes;
    return {
      memoryBytes,
      cpus: input?.cpus ?? s.cpus,
      pids: input?.pids ?? s.pids,
      diskBytes: input?.diskMb !== undefined ? input.diskMb * MiB : s.diskBytes,
      inodes: s.inodes,
      tmpBytes: Math.min(s.tmpBytes, memoryBytes),
    };
  }

  /**
   * Creates a session: resolves its template (or operator image) and checks the per-user creation rate, reserves
   * a `creating` record atomically within the live-session limit, creates the sandbox, then runs the template's
   * start command and waits for its ready check. A backend failure leaves the session `failed` with the reason; a
   * failed start destroys it; the error reaches the caller.
   */
  async create(
    ownerId: string,
    input: SessionCreateInput,
    audit: AuditContext,
    from: { parentId?: string; snapshot?: SnapshotRecord } = {},
  ): Promise<SessionRecord> {
    const snapshot =
      from.snapshot ??
      (input.fromSnapshot === undefined ? undefined : await this.#ownSnapshot(ownerId, input.fromSnapshot));
    if (snapshot && (input.template !== undefined || input.image !== undefined)) {
      throw new AppError(
        'INPUT_INVALID',
        "a session made from a snapshot runs the snapshot's template: leave out template and image",
      );
    }
    const chosen: SessionTemplate = snapshot
      ? {
          image: snapshot.image,
          templateId: snapshot.templateId,
          runtime: await this.#o.templates?.runtimeOf(snapshot.templateId),
        }
      : await this.#template(ownerId, input);
    const verdict = this.#createLimiter.take(ownerId);
    if (!verdict.allowed) throw rateLimitedError(verdict, 'session creations');
    const network =
      input.network ??
      (snapshot ? { mode: snapshot.network.mode, allow: snapshot.network.allow } : NO_NETWORK);
    this.#checkNetwork(network as NetworkSettings);
    const secrets = input.secrets ?? snapshot?.secrets ?? [];
    if (secrets.length > 0) {
      const found = new Set((await this.#o.store.listSecrets(ownerId, secrets)).map((s) => s.name));
      const missing = secrets.filter((name) => !found.has(name));
      if (missing.length > 0) {
        throw new AppError(
          'NOT_FOUND',
          `you have no secret named ${missing.join(', ')}; store it first with secrets.create (names are case-sensitive)`,
        );
      }
    }
    const backend = snapshot ? this.#snapshotBackend(snapshot) : await this.#pickBackend(input.backend);
    const resources = snapshot ? snapshot.resources : this.#resources(input.resources);
    const record = await this.#o.store
      .reserveSession(
        {
          id: newId('ses_'),
          ownerId,
          backend: backend.name,
          image: chosen.image,
          templateId: chosen.templateId,
          resources,
          network: { mode: network.mode, allow: [...network.allow] },
          secrets: [...secrets],
          instanceId: this.#o.instanceId,
          parentId: from.parentId ?? null,
          // A fork's capture is deleted once the forks exist: only a named snapshot is worth pointing at.
          fromSnapshotId: snapshot && !from.parentId ? snapshot.id : null,
          keepAwake: input.keepAwake ?? false,
        },
        this.#o.policy.maxLiveSessionsPerUser,
      )
      .catch(async (error: unknown) => {
        if (isStoreError(error, 'SESSION_LIMIT')) {
          await this.#audit({
            ...audit,
            action: 'session.create',
            outcome: 'denied',
            details: { reason: error.code },
          });
        }
        throw error;
      });
    const settled = this.#createSandbox(record, backend, chosen, resources, ownerId, audit, snapshot);
    this.#creates.set(
      record.id,
      settled.catch(() => undefined),
    );
    let running: SessionRecord;
    try {
      running = await settled;
    } finally {
      this.#creates.delete(record.id);
    }
    const handle = this.#handles.get(record.id);
    // From a snapshot with memory, the start command's programs carry on from the snapshot: not started again.
    if (handle && chosen.runtime && !snapshot?.memory) {
      try {
        await startTemplate(handle, chosen.runtime);
      } catch (error) {
        // A session whose start command or ready check failed is of no use: it goes, and the caller learns why.
        // (After the create settled: destroy waits for a create in flight.)
        this.#o.logger.info('template start failed; the session is destroyed', {
          sessionId: record.id,
          error: String(error),
        });
        await this.destroy(ownerId, record.id, audit).catch((e: unknown) =>
          this.#o.logger.warn('destroying a session whose template did not start failed', { error: e }),
        );
        throw error;
      }
    }
    return running;
  }

  /**
   * The sandbox of a `creating` session: its id is recorded as the session's, with its owner record, before the
   * backend makes anything of it (issue 17), so a crash at any point leaves a record reconciliation finishes or
   * undoes.
   */
  async #createSandbox(
    record: SessionRecord,
    backend: IsolationBackend,
    chosen: SessionTemplate,
    resources: SessionResources,
    ownerId: string,
    audit: AuditContext,
    snapshot?: SnapshotRecord,
  ): Promise<SessionRecord> {
    const image = chosen.image;
    // A warm sandbox (reset, default resources) when the pool has one; otherwise a cold create.
    const pooled = snapshot
      ? undefined
      : await this.#o.pool?.claim(backend.name, image, resources).catch(() => undefined);
    const sandboxId = pooled?.id ?? newSandboxId();
    if (pooled) this.#assigning.add(sandboxId);
    let owned: SessionRecord | undefined;
    try {
      owned = await this.#o.store.assignSandbox(sandboxId, record.id);
    } finally {
      this.#assigning.delete(sandboxId);
    }
    if (!owned) {
      // Destroyed before it got a sandbox: a claimed pool member goes (never reused after a claim).
      if (pooled) await this.#removeSandbox(backend, sandboxId).catch(() => undefined);
      throw new AppError('INVALID_STATE', `session ${record.id} was destroyed while it was being created`);
    }
    let sandbox: Sandbox;
    if (pooled) sandbox = pooled;
    else
      try {
        sandbox = await backend.create({
          id: sandboxId,
          image,
          resources,
          network: 'none',
          labels: {
            ...this.#o.labels,
            'studio.session': record.id,
            'studio.owner': ownerId,
          },
          ...(snapshot ? { fromSnapshot: snapshot.id } : {}),
        });
      } catch (error) {
        const reason = isIsolationError(error) ? `${error.code}: ${error.message}` : 'the backend failed';
        this.#o.logger.warn('sandbox create failed', { sessionId: record.id, error });
        await this.#o.store.transitionSession(record.id, ['creating'], 'failed', { failureReason: reason });
        await this.#audit({ ...audit, action: 'session.create', outcome: 'failure', target: record.id });
        throw error;
      }
    const running = await this.#o.store.transitionSession(record.id, ['creating'], 'running');
    if (!running) {
      // Destroyed (or rolled back) while it was being created: nothing may outlive its session.
      await this.#removeSandbox(backend, sandbox.id).catch(() => undefined);
      throw new AppError('INVALID_STATE', `session ${record.id} was destroyed while it was being created`);
    }
    const handle = withTemplateRuntime(this.#behindEgress(sandbox, running), chosen.runtime);
    this.#handles.set(record.id, handle);
    if (pooled) this.#pooled.add(record.id);
    await this.#audit({
      ...audit,
      action: 'session.create',
      outcome: 'success',
      target: record.id,
      details: {
        pooled: pooled !== undefined,
        network: record.network.mode,
        ...(record.parentId ? { parent: record.parentId } : {}),
        ...(snapshot ? { snapshot: snapshot.id, memory: snapshot.memory } : {}),
        ...(record.secrets.length > 0 ? { secrets: record.secrets } : {}),
      },
    });
    return running;
  }

  /** Destroys a sandbox, then forgets its owner record (kept when the destroy fails, so it is retried). */
  async #removeSandbox(backend: IsolationBackend, sandboxId: string): Promise<void> {
    await backend.destroy(sandboxId);
    await this.#o.store.forgetSandbox(sandboxId);
  }

  async list(ownerId: string, includeEnded = false): Promise<SessionRecord[]> {
    return (await this.#o.store.listSessions(ownerId, { includeEnded })).map((r) => this.#withReason(r));
  }

  /** A stopped session's record carries why it stopped when it stopped on its own (`stopReason`). */
  #withReason(record: SessionRecord): SessionRecord {
    const reason = record.state === 'stopped' ? this.#stopReasons.get(record.id) : undefined;
    return reason === undefined ? record : Object.assign(record, { stopReason: reason });
  }

  /**
   * After an operation on a session's sandbox failed: when the sandbox is no longer running (under gVisor a
   * memory or fork bomb takes the whole sandbox down, RUNTIME-FACTS.md), the session becomes `stopped` now, with
   * the reason (audited, announced through `onStopped`, shown as `stopReason`), instead of staying `running`
   * until the next reconciliation. `sessions.start` brings it back.
   */
  async noteSandboxFailure(id: string, error: unknown): Promise<void> {
    if (!isIsolationError(error) || !['RESOURCE_LIMIT', 'INVALID_STATE', 'NOT_FOUND'].includes(error.code))
      return;
    const sandbox = this.#handles.get(id);
    if (!sandbox) return;
    const info = await sandbox.info().catch(() => undefined);
    if (info === undefined || info.state !== 'stopped') return;
    const reason = info.failure?.reason ?? error.message;
    const updated = await this.#o.store.transitionSession(id, ['running'], 'stopped');
    if (!updated) return;
    this.#handles.delete(id);
    this.#stopReasons.set(id, reason);
    this.#o.logger.warn('session stopped: its sandbox died', { sessionId: id, reason });
    await this.#audit({
      actorId: null,
      ip: null,
      requestId: null,
      action: 'session.stop',
      outcome: 'failure',
      target: id,
      details: { reason, code: error.code },
    });
    this.#o.onStopped?.(id, reason);
  }

  /** The caller's session, or NOT_FOUND (auditing the attempt when the id belongs to someone else). */
  async get(ownerId: string, id: string, audit: AuditContext): Promise<SessionRecord> {
    const record = await this.#o.store.getSession(ownerId, id);
    if (record) return this.#withReason(record);
    const other = await this.#o.store.getSessionById(id);
    if (other) {
      await this.#audit({ ...audit, action: 'session.access', outcome: 'denied', target: id });
    }
    throw new AppError('NOT_FOUND', `session ${id} not found; sessions.list shows yours`);
  }

  #backendOf(record: SessionRecord): IsolationBackend {
    const backend = this.#backends.get(record.backend);
    if (!backend) {
      throw new AppError(
        'BACKEND_UNAVAILABLE',
        `session ${record.id} runs on backend ${record.backend}, which is not enabled on this server`,
      );
    }
    return backend;
  }

  async #sandbox(record: SessionRecord): Promise<Sandbox> {
    const cached = this.#handles.get(record.id);
    if (cached) return cached;
    if (!record.sandboxId) throw new AppError('INVALID_STATE', `session ${record.id} has no sandbox yet`);
    const runtime = await this.#o.templates?.runtimeOf(record.templateId ?? null);
    const sandbox = withTemplateRuntime(
      this.#behindEgress(await this.#backendOf(record).get(record.sandboxId), record),
      runtime,
    );
    this.#handles.set(record.id, sandbox);
    return sandbox;
  }

  /** The handle programs of this session start from: behind the egress proxy when there is one. */
  #behindEgress(sandbox: Sandbox, record: SessionRecord): Sandbox {
    return this.#o.egress
      ? this.#o.egress.wrap(sandbox, {
          sessionId: record.id,
          ownerId: record.ownerId,
          network: record.network,
          secrets: record.secrets,
        })
      : sandbox;
  }

  /** What a create asks for: through the templates when there are any, else one of the operator's images. */
  async #template(
    ownerId: string,
    input: Pick<SessionCreateInput, 'template' | 'image'>,
  ): Promise<SessionTemplate> {
    if (this.#o.templates) return this.#o.templates.forSession(ownerId, input);
    const image = input.image ?? (this.#o.images[0] as string);
    if (input.template !== undefined || !this.#o.images.includes(image)) {
      throw new AppError(
        'TEMPLATE_NOT_FOUND',
        `${input.template ?? image} is not offered here; use one of: ${this.#o.images.join(', ')}`,
      );
    }
    return { image, templateId: null, runtime: undefined };
  }

  /** Refuses settings the operator's policy does not permit (`open` without `egress.allowOpen`). */
  #checkNetwork(network: NetworkSettings): void {
    if (network.mode === 'open' && !this.#o.policy.egress.allowOpen) {
      throw new AppError(
        'EGRESS_DENIED',
        'this server does not permit network mode open; use mode allowlist and list the hosts the session needs (the operator permits open with STUDIO_POLICY egress.allowOpen)',
      );
    }
  }

  /**
   * Replaces the network settings of the caller's live session (audited). Connections already open through the
   * proxy end, so the new settings hold for everything from now on; programs need not restart.
   */
  async setNetwork(
    ownerId: string,
    id: string,
    network: NetworkSettings,
    audit: AuditContext,
  ): Promise<SessionRecord> {
    const before = await this.get(ownerId, id, audit);
    this.#checkNetwork(network);
    const updated = await this.#o.store.setSessionNetwork(ownerId, id, {
      mode: network.mode,
      allow: [...network.allow],
    });
    if (!updated) {
      throw new AppError(
        'INVALID_STATE',
        `session ${id} is ${before.state}: its network can no longer change`,
      );
    }
    this.#o.egress?.update(id, network);
    await this.#audit({
      ...audit,
      action: 'session.network',
      outcome: 'success',
      target: id,
      details: { from: before.network, to: updated.network },
    });
    return this.#withReason(updated);
  }

  #requireRunning(record: SessionRecord): void {
    if (record.state === 'running') return;
    const hint =
      record.state === 'stopped'
        ? 'start it with sessions.start'
        : record.state === 'paused'
          ? 'resume it with sessions.resume (any exec, file or terminal use resumes it too)'
          : record.state === 'creating'
            ? 'wait until it is running'
            : record.state === 'destroying'
              ? 'it is being destroyed; create a new session'
              : record.state === 'failed'
                ? `it failed (${record.failureReason ?? 'unknown'}); destroy it and create another`
                : 'create a new session';
    throw new AppError('INVALID_STATE', `session ${record.id} is ${record.state}: ${hint}`);
  }

  /**
   * Runs `fn` with the sandbox of the caller's running session, and records activity for the idle timeout and
   * automatic pausing. A paused session is resumed first (issue 20), unless `resume` is false (what Studio does
   * on its own, such as watching files for an open IDE, must not wake it): then INVALID_STATE.
   */
  async withSandbox<T>(
    ownerId: string,
    id: string,
    audit: AuditContext,
    fn: (sandbox: Sandbox, record: SessionRecord) => Promise<T>,
    options: { resume?: boolean } = {},
  ): Promise<T> {
    let record = await this.get(ownerId, id, audit);
    await this.#transitions.get(id);
    if (options.resume === false && this.#transitions.has(id)) {
      throw new AppError('INVALID_STATE', `session ${id} is pausing`);
    }
    if (options.resume === false && record.state === 'paused') {
      throw new AppError('INVALID_STATE', `session ${id} is paused: any use resumes it`);
    }
    if (record.state === 'paused' || this.#transitions.has(id)) {
      // Any use of a paused session resumes it (issue 20): the caller never sees the pause.
      record = await this.resume(ownerId, id, audit, 'used');
    }
    this.#requireRunning(record);
    const sandbox = await this.#sandbox(record);
    this.#touch(record.id);
    try {
      return await fn(sandbox, record);
    } catch (error) {
      if (
        isIsolationError(error) &&
        (error.code === 'INVALID_STATE' || error.code === 'UNAVAILABLE') &&
        (this.#transitions.has(id) || (await this.#o.store.getSessionById(id))?.state === 'paused')
      ) {
        // Cut short by a pause (sessions.pause, or the idle sweep): say so, in the session's terms.
        throw new AppError(
          'INVALID_STATE',
          `session ${id} was paused while this ran, which ended it; run it again (that resumes the session)`,
          { cause: error },
        );
      }
      await this.noteSandboxFailure(record.id, error).catch(() => undefined);
      throw error;
    }
  }

  /** Records activity on a session for automatic pausing (a preview request, terminal input), resuming it if paused. */
  async use(ownerId: string, id: string, audit: AuditContext): Promise<SessionRecord> {
    return this.withSandbox(ownerId, id, audit, async (_sandbox, record) => record);
  }

  /** Records activity on a session (terminal input) for the idle timeout and automatic pausing. */
  noteActivity(id: string): void {
    this.#touch(id);
  }

  /** Whether a pause or resume of the session is in hand (a terminal that ends now ends because of it). */
  isPausing(id: string): boolean {
    return this.#transitions.has(id);
  }

  #touch(id: string): void {
    const now = Date.now();
    if (now - (this.#lastTouch.get(id) ?? 0) < 5_000) return;
    this.#lastTouch.set(id, now);
    void this.#o.store.touchSession(id).catch(() => undefined);
  }

  async stop(ownerId: string, id: string, audit: AuditContext): Promise<SessionRecord> {
    // One at a time with pauses and resumes: a stop must not race a resume of the same session.
    return this.#transition(id, () => this.#stop(ownerId, id, audit));
  }

  async #stop(ownerId: string, id: string, audit: AuditContext): Promise<SessionRecord> {
    const record = await this.get(ownerId, id, audit);
    if (record.state === 'stopped') return record;
    // A paused session can be stopped too: its saved memory is discarded, its workspace kept.
    if (record.state !== 'paused') this.#requireRunning(record);
    await (await this.#sandbox(record)).stop();
    const updated = await this.#o.store.transitionSession(id, ['running', 'paused'], 'stopped');
    await this.#audit({ ...audit, action: 'session.stop', outcome: 'success', target: id });
    return updated ?? this.get(ownerId, id, audit);
  }

  async start(ownerId: string, id: string, audit: AuditContext): Promise<SessionRecord> {
    const record = await this.get(ownerId, id, audit);
    if (record.state === 'running') return record;
    if (record.state !== 'stopped') this.#requireRunning(record);
    if (this.#age(record, Date.now()) > this.#o.policy.session.ttlMs) {
      throw new AppError('INVALID_STATE', `session ${id} reached its time limit; create a new session`);
    }
    this.#starts.add(id);
    let sandbox: Sandbox;
    try {
      sandbox = await this.#sandbox(record);
      await sandbox.start();
    } finally {
      this.#starts.delete(id);
    }
    // A stopped session's programs ended with it: its template's start command runs again.
    await startTemplate(sandbox, await this.#o.templates?.runtimeOf(record.templateId ?? null));
    const updated = await this.#o.store.transitionSession(id, ['stopped'], 'running');
    this.#stopReasons.delete(id);
    await this.#audit({ ...audit, action: 'session.start', outcome: 'success', target: id });
    return updated ?? this.get(ownerId, id, audit);
  }

  /** How long the session has existed, less the time it spent paused (its time limit counts this). */
  #age(record: SessionRecord, now: number): number {
    const pausedNow = record.pausedAt ? now - record.pausedAt.getTime() : 0;
    return now - record.createdAt.getTime() - record.pausedMs - pausedNow;
  }

  /** Runs one pause or resume of session `id` at a time; a use of the session waits for it. */
  async #transition<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#transitions.get(id) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.#transitions.set(id, tail);
    void tail.then(() => {
      if (this.#transitions.get(id) === tail) this.#transitions.delete(id);
    });
    return run;
  }

  /**
   * Pauses the caller's running session (issue 20): its sandbox is saved, with memory, processes and open files
   * where the backend can (gVisor), else only its workspace (its programs start again on resume), and released:
   * it holds none of the host's memory until resumed. Terminals, streams and preview connections end. Idempotent.
   * `reason`: `user` (sessions.pause) or `idle` (automatic).
   */
  async pause(
    ownerId: string,
    id: string,
    audit: AuditContext,
    reason: 'user' | 'idle' = 'user',
  ): Promise<SessionRecord> {
    return this.#transition(id, async () => {
      const record = await this.get(ownerId, id, audit);
      if (record.state === 'paused') return record;
      this.#requireRunning(record);
      this.#requireSnapshots(record, 'pause sessions: stop it instead (sessions.stop)');
      const sandbox = await this.#sandbox(record);
      const { memory } = await sandbox.suspend();
      const updated = await this.#o.store.transitionSession(id, ['running'], 'paused');
      await this.#audit({
        ...audit,
        action: 'session.pause',
        outcome: 'success',
        target: id,
        details: { reason, memory },
      });
      if (reason === 'idle') this.#o.onStatus?.(id, 'paused', 'paused after being idle; any use resumes it');
      return updated ?? this.get(ownerId, id, audit);
    });
  }

  /**
   * Resumes the caller's paused session: with its memory where it was saved (programs carry on where they were),
   * else started again (its template's start command runs again). A saved state that cannot be restored leaves the
   * session `stopped` with its workspace intact and fails with RESTORE_FAILED; sessions.start then starts it afresh.
   * Idempotent for a running session. `reason`: `user` (sessions.resume) or `used` (any use of a paused session).
   */
  async resume(
    ownerId: string,
    id: string,
    audit: AuditContext,
    reason: 'user' | 'used' = 'user',
  ): Promise<SessionRecord> {
    return this.#transition(id, async () => {
      const record = await this.get(ownerId, id, audit);
      if (record.state !== 'paused') {
        if (record.state !== 'running') this.#requireRunning(record);
        return record;
      }
      if (this.#age(record, Date.now()) > this.#o.policy.session.ttlMs) {
        throw new AppError('INVALID_STATE', `session ${id} reached its time limit; create a new session`);
      }
      const backend = this.#backendOf(record);
      const sandbox = await this.#sandbox(record);
      this.#starts.add(id);
      try {
        await sandbox.start();
      } catch (error) {
        if (isIsolationError(error, 'RESTORE_FAILED')) {
          await this.#o.store.transitionSession(id, ['paused'], 'stopped');
          this.#handles.delete(id);
          const why = 'its saved memory could not be restored; the workspace is intact';
          this.#stopReasons.set(id, why);
          await this.#audit({
            ...audit,
            action: 'session.resume',
            outcome: 'failure',
            target: id,
            details: { reason: why },
          });
          this.#o.onStatus?.(id, 'stopped', why);
        }
        throw error;
      } finally {
        this.#starts.delete(id);
      }
      if (!backend.capabilities().checkpoint) {
        // Its programs ended with the pause: the template's start command runs again, as after sessions.start.
        await startTemplate(sandbox, await this.#o.templates?.runtimeOf(record.templateId ?? null));
      }
      // Programs that carried on find their proxy endpoint at once, not only after the next command.
      await this.#o.egress?.reopen(id).catch(() => undefined);
      const updated = await this.#o.store.transitionSession(id, ['paused'], 'running');
      this.#lastTouch.set(id, Date.now());
      await this.#audit({
        ...audit,
        action: 'session.resume',
        outcome: 'success',
        target: id,
        details: { reason },
      });
      if (reason === 'used') this.#o.onStatus?.(id, 'running', 'resumed on use');
      return updated ?? this.get(ownerId, id, audit);
    });
  }

  /** Sets whether automatic pausing leaves the caller's session running while idle (audited). */
  async setKeepAwake(
    ownerId: string,
    id: string,
    keepAwake: boolean,
    audit: AuditContext,
  ): Promise<SessionRecord> {
    await this.get(ownerId, id, audit);
    const updated = await this.#o.store.setSessionKeepAwake(ownerId, id, keepAwake);
    if (!updated) throw new AppError('NOT_FOUND', `session ${id} not found; sessions.list shows yours`);
    await this.#audit({
      ...audit,
      action: 'session.keep_awake',
      outcome: 'success',
      target: id,
      details: { keepAwake },
    });
    return updated;
  }

  /**
   * Forks the caller's session into `count` new sessions from this moment (issue 20): each gets its own copy of
   * the workspace and, where the backend saves memory, of its running programs. The source is paused only for the
   * capture and runs on. Forks belong to the caller, count against the live-session limit (checked first; a fork
   * cut short removes the forks it made), and record their parent.
   */
  async fork(ownerId: string, id: string, count: number, audit: AuditContext): Promise<SessionRecord[]> {
    const max = this.#o.policy.snapshots.maxForks;
    if (count > max) {
      throw new AppError('LIMIT_EXCEEDED', `a fork makes at most ${max} sessions here: ask for fewer`);
    }
    const live = (await this.#o.store.listSessions(ownerId)).length;
    const limit = this.#o.policy.maxLiveSessionsPerUser;
    if (live + count > limit) {
      throw new AppError(
        'SESSION_LIMIT',
        `a fork of ${count} would make ${live + count} live sessions, and the limit is ${limit}: destroy sessions you no longer need, or fork fewer`,
      );
    }
    return this.withSandbox(ownerId, id, audit, async (sandbox, record) => {
      const backend = this.#requireSnapshots(record, 'fork sessions');
      // Recorded (unnamed, so never listed or counted) until the forks exist: a crash leaves a row reconciliation
      // removes with the backend's copy.
      const capture = await this.#capture(sandbox, record, ownerId, null);
      const snapshotId = capture.id;
      const forks: SessionRecord[] = [];
      try {
        for (let i = 0; i < count; i++) {
          forks.push(
            await this.create(ownerId, { backend: 'auto' } as SessionCreateInput, audit, {
              parentId: record.id,
              snapshot: capture,
            }),
          );
        }
      } catch (error) {
        // All or nothing: a fork cut short (a limit reached meanwhile, a full disk) leaves no forks behind.
        for (const f of forks) await this.destroy(ownerId, f.id, audit).catch(() => undefined);
        throw error;
      } finally {
        await backend
          .deleteSnapshot(snapshotId)
          .catch((error: unknown) =>
            this.#o.logger.warn('could not remove a fork capture', { snapshotId, error }),
          );
        await this.#o.store.deleteSnapshot(snapshotId).catch(() => undefined);
      }
      await this.#audit({
        ...audit,
        action: 'session.fork',
        outcome: 'success',
        target: record.id,
        details: { forks: forks.map((f) => f.id), memory: capture.memory },
      });
      return forks;
    });
  }

  /**
   * Takes a named snapshot of the caller's session (issue 20): its workspace, and its memory where the backend can,
   * kept until snapshots.delete and counted against the owner's snapshot quota. The session runs on.
   */
  async snapshot(ownerId: string, id: string, name: string, audit: AuditContext): Promise<SnapshotRecord> {
    const quota = this.#o.policy.snapshots.maxBytesPerUser;
    if (quota === 0)
      throw new AppError(
        'FORBIDDEN',
        'this server keeps no snapshots (policy snapshots.maxBytesPerUser is 0)',
      );
    if (await this.#o.store.getSnapshot(ownerId, name)) {
      throw new AppError(
        'ALREADY_EXISTS',
        `you already have a snapshot named ${name}: choose another name, or delete that one first`,
      );
    }
    return this.withSandbox(ownerId, id, audit, async (sandbox, record) => {
      this.#requireSnapshots(record, 'take snapshots');
      const stored = await this.#capture(sandbox, record, ownerId, name, quota);
      await this.#audit({
        ...audit,
        action: 'snapshot.create',
        outcome: 'success',
        target: stored.id,
        details: { session: record.id, name, bytes: stored.bytes, memory: stored.memory },
      });
      return stored;
    });
  }

  /** The session's backend when it can pause, fork and snapshot; UNSUPPORTED naming what it cannot do otherwise. */
  #requireSnapshots(record: SessionRecord, what: string): IsolationBackend {
    const backend = this.#backendOf(record);
    if (!backend.capabilities().snapshots) {
      throw new AppError(
        'UNSUPPORTED',
        `session ${record.id} runs on backend ${backend.name}, which cannot ${what}`,
      );
    }
    return backend;
  }

  /**
   * Snapshots the session's sandbox and records it, with the session's settings (a session made from it gets
   * them): `name` null for a fork's capture, which is never listed and counts 0 bytes against the quota. What the
   * store refuses (a name taken, the quota) is removed from the backend again; the quota is LIMIT_EXCEEDED.
   */
  async #capture(
    sandbox: Sandbox,
    record: SessionRecord,
    ownerId: string,
    name: string | null,
    quota = Number.MAX_SAFE_INTEGER,
  ): Promise<SnapshotRecord> {
    const backend = this.#backendOf(record);
    const taken = await sandbox.snapshot(newSnapshotId());
    try {
      return await this.#o.store.createSnapshot(
        {
          id: taken.id,
          ownerId,
          name,
          sessionId: record.id,
          backend: backend.name,
          instanceId: this.#o.instanceId,
          image: record.image,
          templateId: record.templateId,
          resources: record.resources,
          network: record.network,
          secrets: record.secrets,
          memory: taken.memory,
          bytes: name === null ? 0 : taken.bytes,
        },
        quota,
      );
    } catch (error) {
      await backend.deleteSnapshot(taken.id).catch(() => undefined);
      if (isStoreError(error, 'INVALID_INPUT')) throw new AppError('LIMIT_EXCEEDED', error.message);
      throw error;
    }
  }

  /** The caller's named snapshots, newest first. */
  listSnapshots(ownerId: string): Promise<SnapshotRecord[]> {
    return this.#o.store.listSnapshots(ownerId);
  }

  /** The caller's snapshot by id or name, or NOT_FOUND. */
  async #ownSnapshot(ownerId: string, ref: string): Promise<SnapshotRecord> {
    const found = await this.#o.store.getSnapshot(ownerId, ref);
    if (!found || found.name === null) {
      throw new AppError('NOT_FOUND', `you have no snapshot ${ref}; snapshots.list shows yours`);
    }
    return found;
  }

  getSnapshot(ownerId: string, ref: string): Promise<SnapshotRecord> {
    return this.#ownSnapshot(ownerId, ref);
  }

  /** Removes the caller's snapshot from its backend and the store (audited). */
  async deleteSnapshot(ownerId: string, ref: string, audit: AuditContext): Promise<SnapshotRecord> {
    const found = await this.#ownSnapshot(ownerId, ref);
    await this.#snapshotBackend(found).deleteSnapshot(found.id);
    await this.#o.store.deleteSnapshot(found.id);
    await this.#audit({ ...audit, action: 'snapshot.delete', outcome: 'success', target: found.id });
    return found;
  }

  /**
   * The backend that keeps a snapshot here: its own backend on the node that took it, or on any node when snapshots
   * are shared, except a snapshot with memory (a gVisor checkpoint restores on the host that took it).
   */
  #snapshotBackend(snapshot: SnapshotRecord): IsolationBackend {
    const name = snapshot.name ?? snapshot.id;
    const backend = this.#backends.get(snapshot.backend);
    if (!backend) {
      throw new AppError(
        'BACKEND_UNAVAILABLE',
        `snapshot ${name} was taken on backend ${snapshot.backend}, which is not enabled here`,
      );
    }
    if (snapshot.instanceId === this.#o.instanceId) return backend;
    if (!this.#o.sharedSnapshots) {
      throw new AppError(
        'BACKEND_UNAVAILABLE',
        `snapshot ${name} is kept on ${snapshot.instanceId} (another node or server): retry when that node answers again, or keep snapshots on a filesystem every node mounts (STUDIO_SNAPSHOTS_DIR)`,
      );
    }
    if (snapshot.memory) {
      throw new AppError(
        'BACKEND_UNAVAILABLE',
        `snapshot ${name} holds memory, which is restored only on the node that took it (${snapshot.instanceId}): retry when that node answers again`,
      );
    }
    return backend;
  }

  /**
   * Destroys the sandbox and its workspace, then marks the session destroyed. Idempotent. `destroying` is
   * recorded first, so a destroy a crash interrupts is finished by reconciliation on restart.
   */
  async destroy(ownerId: string, id: string, audit: AuditContext): Promise<SessionRecord> {
    const record = await this.get(ownerId, id, audit);
    if (record.state === 'destroyed') return record;
    if (record.instanceId !== this.#o.instanceId && !this.#backends.has(record.backend)) {
      // A cluster's replica (issue 23) destroying the session of a node that is gone: the record ends here, and
      // the node, should it come back, removes the sandbox as an orphan (its store says destroyed).
      await this.#o.store.transitionSession(
        id,
        ['creating', 'running', 'stopped', 'paused', 'failed', 'destroying'],
        'destroyed',
      );
      await this.#audit({ ...audit, action: 'session.destroy', outcome: 'success', target: id });
      return this.get(ownerId, id, audit);
    }
    const backend = this.#backendOf(record);
    if (record.state !== 'destroying') {
      const marked = await this.#o.store.transitionSession(
        id,
        ['creating', 'running', 'stopped', 'paused', 'failed'],
        'destroying',
      );
      if (!marked) return this.destroy(ownerId, id, audit);
    }
    this.#destroys.add(id);
    try {
      await this.#finishDestroy(backend, id);
    } finally {
      this.#destroys.delete(id);
    }
    await this.#audit({ ...audit, action: 'session.destroy', outcome: 'success', target: id });
    return this.get(ownerId, id, audit);
  }

  /** The rest of a destroy once `destroying` is recorded: waits out a create in hand, removes, marks destroyed. */
  async #finishDestroy(backend: IsolationBackend, id: string): Promise<void> {
    // A create this process is running ends first (it then finds the session destroying and removes its own
    // sandbox), so no sandbox is made after the one below is removed.
    await this.#creates.get(id);
    const current = await this.#o.store.getSessionById(id);
    if (current?.sandboxId) await this.#removeSandbox(backend, current.sandboxId);
    this.#handles.delete(id);
    this.#lastTouch.delete(id);
    this.#o.egress?.forget(id);
    await this.#o.store.transitionSession(id, ['destroying'], 'destroyed');
  }

  async stats(
    ownerId: string,
    id: string,
    audit: AuditContext,
  ): Promise<{ session: SessionRecord; stats: SandboxStats | null }> {
    const record = await this.get(ownerId, id, audit);
    if (record.state !== 'running') return { session: record, stats: null };
    return { session: record, stats: await (await this.#sandbox(record)).stats() };
  }

  /** Stops every running session of `ownerId` (their workspaces are kept); used when a user is disabled. */
  async stopAllOf(ownerId: string, audit: AuditContext): Promise<string[]> {
    const stopped: string[] = [];
    for (const record of await this.#o.store.listSessions(ownerId)) {
      if (record.state !== 'running' && record.state !== 'paused') continue;
      try {
        await this.stop(ownerId, record.id, audit);
        stopped.push(record.id);
      } catch (error) {
        this.#o.logger.warn('could not stop a session of a disabled user', { sessionId: record.id, error });
      }
    }
    return stopped;
  }

  /**
   * Stops running sessions idle longer than the policy's idle timeout or older than its TTL. Returns the ids
   * stopped. Run periodically by {@link startSweeper}.
   */
  async sweep(now: Date = new Date()): Promise<string[]> {
    const { idleTimeoutMs, ttlMs, pauseAfterMs } = this.#o.policy.session;
    const stopped: string[] = [];
    for (const record of await this.#o.store.listLiveSessions()) {
      if (record.state !== 'running' || record.instanceId !== this.#o.instanceId) continue;
      if (this.#transitions.has(record.id)) continue;
      const quiet =
        now.getTime() - Math.max(record.lastActiveAt.getTime(), this.#lastTouch.get(record.id) ?? 0);
      const idle = !record.keepAwake && quiet > idleTimeoutMs;
      const expired = this.#age(record, now.getTime()) > ttlMs;
      if (
        !expired &&
        !record.keepAwake &&
        pauseAfterMs > 0 &&
        quiet > pauseAfterMs &&
        this.#backends.get(record.backend)?.capabilities().snapshots
      ) {
        await this.pause(record.ownerId, record.id, SYSTEM, 'idle').catch((error: unknown) =>
          this.#o.logger.warn('sweep could not pause an idle session', { sessionId: record.id, error }),
        );
        continue;
      }
      if (!idle && !expired) continue;
      try {
        await (await this.#sandbox(record)).stop();
        await this.#o.store.transitionSession(record.id, ['running'], 'stopped');
        await this.#audit({
          actorId: null,
          ip: null,
          requestId: null,
          action: 'session.stop',
          outcome: 'success',
          target: record.id,
          details: { reason: expired ? 'ttl' : 'idle' },
        });
        stopped.push(record.id);
      } catch (error) {
        this.#o.logger.warn('sweep could not stop a session', { sessionId: record.id, error });
      }
    }
    return stopped;
  }

  startSweeper(intervalMs = 60_000): void {
    this.#sweeper ??= setInterval(() => {
      this.sweep().catch((error: unknown) => this.#o.logger.warn('sweep failed', { error }));
    }, intervalMs);
    this.#sweeper.unref();
  }

  /**
   * Reconciles the store with every backend, by labels (`studio.instance` = this instance, `studio.session`):
   * - a recorded session whose sandbox is there is adopted (running stays running; a sandbox found stopped,
   *   e.g. after a Docker daemon restart, which stops containers that have no restart policy, marks the
   *   session `stopped` so `sessions.start` brings it back);
   * - a recorded session whose sandbox vanished is marked `failed` with the reason;
   * - a sandbox labelled with this instance but unknown to the store (an orphan, e.g. the API was killed
   *   mid-create) is destroyed once it has been seen for `orphanGraceMs`. Pool sandboxes (`studio.session=pool`)
   *   are not orphans.
   * A backend that is unavailable is skipped (its sessions are left alone) and remembered as down; when it
   * comes back its cached sandbox handles are dropped. Concurrent calls share one run.
   */
  reconcile(now: number = Date.now()): Promise<ReconcileReport> {
    this.#reconciling ??= this.#reconcile(now).finally(() => {
      this.#reconciling = undefined;
    });
    return this.#reconciling;
  }

  async #reconcile(now: number): Promise<ReconcileReport> {
    const report: ReconcileReport = {
      adopted: [],
      stopped: [],
      failed: [],
      completed: [],
      rolledBack: [],
      destroyed: [],
      leftoversRemoved: [],
      orphansRemoved: [],
      backendsDown: [],
      capturesRemoved: [],
    };
    const grace = this.#o.orphanGraceMs ?? 60_000;
    // Owner records first, then sessions: a record's session was reserved before the record was written, so it is
    // in `live` unless it ended.
    const owners = await this.#o.store.listSandboxOwners(this.#o.instanceId);
    const live = (await this.#o.store.listLiveSessions()).filter((r) => r.instanceId === this.#o.instanceId);
    const seenOrphans = new Set<string>();
    // A failed session keeps its sandbox (and workspace) until it is destroyed: not an orphan.
    const failedSandboxes = new Set(await this.#o.store.listFailedSandboxIds(this.#o.instanceId));
    for (const backend of this.#backends.values()) {
      const a = await backend.available().catch((e: unknown) => ({ ok: false as const, reason: String(e) }));
      if (!a.ok) {
        this.#availableAt.delete(backend.name);
        if (!this.#down.has(backend.name)) {
          this.#o.logger.warn('backend went down; its sessions are left as they are until it returns', {
            backend: backend.name,
            reason: a.reason,
          });
        }
        this.#down.add(backend.name);
        report.backendsDown.push(backend.name);
        continue;
      }
      if (this.#down.delete(backend.name)) {
        this.#o.logger.warn('backend is back; re-attaching its sessions', { backend: backend.name });
        for (const r of live) if (r.backend === backend.name) this.#handles.delete(r.id);
      }
      let infos: SandboxInfo[];
      try {
        infos = await backend.list({ labels: { 'studio.instance': this.#o.instanceId } });
      } catch (error) {
        this.#o.logger.warn('reconcile: listing sandboxes failed', { backend: backend.name, error });
        report.backendsDown.push(backend.name);
        continue;
      }
      const byId = new Map(infos.map((i) => [i.id, i]));
      const readOnly = new Set(infos.filter((i) => i.failure?.workspace === 'read-only').map((i) => i.id));
      for (const id of readOnly) {
        if (!this.#readOnly.get(backend.name)?.has(id)) {
          this.#o.logger.error(
            'a workspace filesystem went read-only: check the host disk (dmesg, free space) of the data directory',
            { backend: backend.name, sandboxId: id, session: byId.get(id)?.labels['studio.session'] ?? null },
          );
        }
      }
      this.#readOnly.set(backend.name, readOnly);
      const known = new Set<string>();
      // Sessions a dead process left half-created or half-destroyed (issue 17).
      const settled = new Set<string>();
      for (const record of live) {
        if (record.backend !== backend.name) continue;
        if (record.sandboxId) known.add(record.sandboxId);
        if (record.state === 'creating' && (await this.#settleCreate(backend, record, byId, now, report)))
          settled.add(record.id);
        if (record.state === 'destroying' && (await this.#settleDestroy(backend, record, now, report)))
          settled.add(record.id);
      }
      const holders = new Set(
        live.filter((r) => !settled.has(r.id) || report.completed.includes(r.id)).map((r) => r.id),
      );
      for (const owner of owners) {
        if (owner.backend !== backend.name) continue;
        known.add(owner.id);
        if (this.#holds(owner, holders, failedSandboxes)) continue;
        seenOrphans.add(owner.id);
        const first = this.#orphansSeen.get(owner.id) ?? now;
        this.#orphansSeen.set(owner.id, first);
        if (now - first < grace) continue;
        try {
          await this.#removeSandbox(backend, owner.id);
          this.#orphansSeen.delete(owner.id);
          report.leftoversRemoved.push(owner.id);
          this.#o.logger.warn('removed a sandbox no session holds (left by a crash)', {
            backend: backend.name,
            sandboxId: owner.id,
            session: owner.sessionId,
          });
          await this.#audit({
            ...SYSTEM,
            action: 'sandbox.leftover_removed',
            outcome: 'success',
            target: owner.id,
            details: { backend: backend.name, session: owner.sessionId },
          });
        } catch (error) {
          this.#o.logger.warn('could not remove a leftover sandbox', { sandboxId: owner.id, error });
        }
      }
      for (const record of live) {
        if (record.backend !== backend.name || settled.has(record.id)) continue;
        if (record.state === 'creating' || record.state === 'destroying' || !record.sandboxId) continue;
        const info = byId.get(record.sandboxId);
        if (!info) {
          const reason = `sandbox ${record.sandboxId} vanished from backend ${backend.name} (removed outside Studio); the workspace may be lost`;
          if (
            await this.#o.store.transitionSession(record.id, ['running', 'stopped', 'paused'], 'failed', {
              failureReason: reason,
            })
          ) {
            this.#handles.delete(record.id);
            report.failed.push(record.id);
            this.#o.logger.warn('session failed: sandbox vanished', {
              sessionId: record.id,
              sandboxId: record.sandboxId,
            });
            await this.#audit({
              actorId: null,
              ip: null,
              requestId: null,
              action: 'session.fail',
              outcome: 'failure',
              target: record.id,
              details: { reason },
            });
          }
          continue;
        }
        if (info.state === 'failed') {
          const reason = `sandbox failed: ${info.failure?.reason ?? 'unknown'}`;
          if (
            await this.#o.store.transitionSession(record.id, ['running', 'stopped', 'paused'], 'failed', {
              failureReason: reason,
            })
          ) {
            this.#handles.delete(record.id);
            report.failed.push(record.id);
            this.#o.logger.warn('session failed', {
              sessionId: record.id,
              sandboxId: record.sandboxId,
              reason,
            });
            await this.#audit({
              actorId: null,
              ip: null,
              requestId: null,
              action: 'session.fail',
              outcome: 'failure',
              target: record.id,
              details: { reason },
            });
            this.#o.onFailed?.(record.id, reason);
          }
          continue;
        }
        if (!this.#transitions.has(record.id)) {
          // A pause or resume the API was stopped in, after the backend had done its part.
          if (record.state === 'running' && info.state === 'suspended') {
            if (await this.#o.store.transitionSession(record.id, ['running'], 'paused')) {
              this.#handles.delete(record.id);
              this.#o.logger.warn('completed a pause the API was stopped in', { sessionId: record.id });
            }
          } else if (record.state === 'paused' && info.state === 'running') {
            if (await this.#o.store.transitionSession(record.id, ['paused'], 'running')) {
              this.#handles.delete(record.id);
              this.#o.logger.warn('completed a resume the API was stopped in', { sessionId: record.id });
            }
          } else if (record.state === 'paused' && info.state === 'stopped') {
            if (await this.#o.store.transitionSession(record.id, ['paused'], 'stopped')) {
              this.#handles.delete(record.id);
              report.stopped.push(record.id);
            }
          }
        }
        if (record.state === 'running' && info.state === 'stopped') {
          // Stopped behind our back (a daemon restart, an OOM of the init): startable again.
          if (await this.#o.store.transitionSession(record.id, ['running'], 'stopped')) {
            this.#handles.delete(record.id);
            report.stopped.push(record.id);
            this.#o.logger.warn('session stopped outside Studio; sessions.start resumes it', {
              sessionId: record.id,
            });
          }
          continue;
        }
        if (record.state === 'stopped' && info.state === 'running' && !this.#starts.has(record.id)) {
          // A start the API was killed in after the runtime had started the sandbox (a kill inside sessions.start):
          // left `stopped`, the session would hold a running sandbox that exec and files refuse to use.
          if (await this.#o.store.transitionSession(record.id, ['stopped'], 'running')) {
            this.#handles.delete(record.id);
            this.#o.logger.warn('completed a start the API was stopped in', { sessionId: record.id });
          }
        }
        report.adopted.push(record.id);
      }
      // Sessions in `creating` may not have their sandbox id recorded yet: protect them by session label.
      const creating = new Set(live.filter((r) => r.state === 'creating').map((r) => r.id));
      // Owners and sessions were read before this list: a create that ran entirely in between shows a sandbox
      // they do not know. Its owner record was written before it existed, so the store, read again now, knows it.
      let ownedNow: Set<string> | undefined;
      const stillOwned = async (info: SandboxInfo): Promise<boolean> => {
        if (!ownedNow) {
          const [o, l] = await Promise.all([
            this.#o.store.listSandboxOwners(this.#o.instanceId),
            this.#o.store.listLiveSessions(),
          ]);
          ownedNow = new Set([
            ...o.map((x) => x.id),
            ...l.flatMap((r) => (r.sandboxId ? [r.sandboxId] : [])),
          ]);
          for (const r of l) if (r.state === 'creating') creating.add(r.id);
        }
        const session = info.labels['studio.session'];
        return ownedNow.has(info.id) || (session !== undefined && creating.has(session));
      };
      for (const info of infos) {
        if (known.has(info.id) || failedSandboxes.has(info.id) || info.labels[POOL_LABEL] === POOL_VALUE)
          continue;
        const session = info.labels['studio.session'];
        if (session && creating.has(session)) continue;
        seenOrphans.add(info.id);
        const first = this.#orphansSeen.get(info.id) ?? now;
        this.#orphansSeen.set(info.id, first);
        if (now - first < grace) continue;
        if (await stillOwned(info)) {
          seenOrphans.delete(info.id);
          this.#orphansSeen.delete(info.id);
          continue;
        }
        try {
          await backend.destroy(info.id);
          this.#orphansSeen.delete(info.id);
          report.orphansRemoved.push(info.id);
          this.#o.logger.warn('removed an orphan sandbox', {
            backend: backend.name,
            sandboxId: info.id,
            session: session ?? null,
          });
          await this.#audit({
            actorId: null,
            ip: null,
            requestId: null,
            action: 'sandbox.orphan_removed',
            outcome: 'success',
            target: info.id,
            details: { backend: backend.name, session: session ?? null },
          });
        } catch (error) {
          this.#o.logger.warn('could not remove an orphan sandbox', { sandboxId: info.id, error });
        }
      }
    }
    for (const id of this.#orphansSeen.keys()) if (!seenOrphans.has(id)) this.#orphansSeen.delete(id);
    await this.#removeStaleCaptures(now, report);
    return report;
  }

  /**
   * A fork's capture is an unnamed snapshot deleted once its forks exist: one older than the transition bound was
   * left by a process that died mid-fork, and goes (from its backend first, then the store).
   */
  async #removeStaleCaptures(now: number, report: ReconcileReport): Promise<void> {
    const bound = this.#o.transitionBoundMs ?? 10 * 60_000;
    for (const snapshot of await this.#o.store.allSnapshots(this.#o.instanceId)) {
      if (snapshot.name !== null || now - snapshot.createdAt.getTime() < bound) continue;
      const backend = this.#backends.get(snapshot.backend);
      if (!backend || report.backendsDown.includes(backend.name)) continue;
      try {
        await backend.deleteSnapshot(snapshot.id);
        await this.#o.store.deleteSnapshot(snapshot.id);
        report.capturesRemoved.push(snapshot.id);
        this.#o.logger.warn('removed a fork capture a crash left behind', { snapshotId: snapshot.id });
      } catch (error) {
        this.#o.logger.warn('could not remove a leftover fork capture', { snapshotId: snapshot.id, error });
      }
    }
  }

  /** Whether an owner record's sandbox is held: by a live session, a failed one (kept until destroyed), the pool. */
  #holds(
    owner: SandboxOwner,
    liveSessions: ReadonlySet<string>,
    failedSandboxes: ReadonlySet<string>,
  ): boolean {
    if (failedSandboxes.has(owner.id) || this.#assigning.has(owner.id)) return true;
    if (owner.sessionId !== null) {
      return (
        liveSessions.has(owner.sessionId) ||
        this.#creates.has(owner.sessionId) ||
        this.#destroys.has(owner.sessionId)
      );
    }
    // Without a pool nothing holds a session-less sandbox; a pool not started yet cannot tell (kept until it can).
    return this.#o.pool !== undefined && this.#o.pool.holds(owner.id) !== false;
  }

  /**
   * A `creating` session no process has in hand (its creator died), or held past the bound: completed when its
   * sandbox is there and running, else its sandbox is removed and the session fails with the reason. Returns
   * whether it was settled.
   */
  async #settleCreate(
    backend: IsolationBackend,
    record: SessionRecord,
    byId: ReadonlyMap<string, SandboxInfo>,
    now: number,
    report: ReconcileReport,
  ): Promise<boolean> {
    const inHand = this.#creates.has(record.id);
    const bound = this.#o.transitionBoundMs ?? 10 * 60_000;
    if (inHand && now - record.createdAt.getTime() < bound) return false;
    const info = record.sandboxId ? byId.get(record.sandboxId) : undefined;
    if (!inHand && info?.state === 'running') {
      if (await this.#o.store.transitionSession(record.id, ['creating'], 'running')) {
        report.completed.push(record.id);
        this.#o.logger.warn('completed a create the API was stopped in', {
          sessionId: record.id,
          sandboxId: record.sandboxId,
        });
        await this.#audit({
          ...SYSTEM,
          action: 'session.create',
          outcome: 'success',
          target: record.id,
          details: { completedByReconcile: true },
        });
      }
      return true;
    }
    try {
      if (record.sandboxId) await this.#removeSandbox(backend, record.sandboxId);
    } catch (error) {
      this.#o.logger.warn('could not undo an interrupted create; retrying later', {
        sessionId: record.id,
        error,
      });
      return false;
    }
    const reason = inHand
      ? 'its create did not finish in time and was undone: destroy it and create another'
      : 'its create was interrupted (the API stopped before it finished) and was undone: destroy it and create another';
    if (await this.#o.store.transitionSession(record.id, ['creating'], 'failed', { failureReason: reason })) {
      report.rolledBack.push(record.id);
      this.#o.logger.warn('rolled back an interrupted create', { sessionId: record.id, reason });
      await this.#audit({
        ...SYSTEM,
        action: 'session.create',
        outcome: 'failure',
        target: record.id,
        details: { reason },
      });
      this.#o.onFailed?.(record.id, reason);
    }
    return true;
  }

  /** A `destroying` session no process has in hand (or held past the bound): the destroy is finished. */
  async #settleDestroy(
    backend: IsolationBackend,
    record: SessionRecord,
    now: number,
    report: ReconcileReport,
  ): Promise<boolean> {
    const bound = this.#o.transitionBoundMs ?? 10 * 60_000;
    if (this.#destroys.has(record.id) && now - record.lastActiveAt.getTime() < bound) return false;
    try {
      await this.#finishDestroy(backend, record.id);
    } catch (error) {
      this.#o.logger.warn('could not finish an interrupted destroy; retrying later', {
        sessionId: record.id,
        error,
      });
      return false;
    }
    report.destroyed.push(record.id);
    this.#o.logger.warn('finished a destroy the API was stopped in', { sessionId: record.id });
    await this.#audit({
      ...SYSTEM,
      action: 'session.destroy',
      outcome: 'success',
      target: record.id,
      details: { finishedByReconcile: true },
    });
    return true;
  }

  /** Whether this process created the session from the warm pool (also in the audit log: `details.pooled`). */
  wasPooled(sessionId: string): boolean {
    return this.#pooled.has(sessionId);
  }

  get pool(): WarmPool | undefined {
    return this.#o.pool;
  }

  /** Starts the warm pool: adopts unclaimed pool sandboxes of a previous run, then fills it in the background. */
  async startPool(): Promise<void> {
    if (!this.#o.pool?.enabled) return;
    const claimed = new Set<string>();
    for (const r of await this.#o.store.listLiveSessions()) if (r.sandboxId) claimed.add(r.sandboxId);
    await this.#o.pool.start(claimed);
  }

  /** Runs {@link reconcile} every `intervalMs` (0: never). */
  startReconciler(intervalMs: number): void {
    if (intervalMs <= 0 || this.#reconciler) return;
    this.#reconciler = setInterval(() => {
      this.reconcile().catch((error: unknown) => this.#o.logger.warn('reconcile failed', { error }));
    }, intervalMs);
    this.#reconciler.unref();
  }

  async close(): Promise<void> {
    if (this.#reconciler) clearInterval(this.#reconciler);
    this.#reconciler = undefined;
    await this.#reconciling?.catch(() => undefined);
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    await this.#o.pool?.close().catch(() => undefined);
    this.#handles.clear();
    await Promise.all([...this.#backends.values()].map((b) => b.close().catch(() => undefined)));
  }

  async #audit(event: AuditContext & AuditEvent): Promise<void> {
    await this.#o.store.audit(event).catch((error: unknown) => {
      this.#o.logger.error('audit write failed', { action: event.action, error });
    });
  }
}
