import {
  type BackendCapabilities,
  type IsolationBackend,
  isIsolationError,
  type Sandbox,
  type SandboxStats,
} from '@studio/isolation';
import {
  createRateLimiter,
  DEFAULT_SESSION_CREATE_LIMIT,
  type Policy,
  type RateLimiter,
  rateLimitedError,
  type SessionCreateInput,
} from '@studio/policy';
import { AppError } from './errors.ts';
import { newId } from './ids.ts';
import type { Logger } from './logger.ts';
import type { AuditEvent, SessionRecord, SessionResources, Store } from './store/store.ts';

const MiB = 1024 * 1024;

/** Request facts recorded with audit events. */
export interface AuditContext {
  actorId: string | null;
  ip: string | null;
  requestId: string | null;
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
  /** Images a client may ask for. */
  images: readonly string[];
  /** Extra labels on every sandbox (tests add `studio.test`). */
  labels?: Record<string, string>;
  /** Session creations per user; default the policy's 10 a minute. */
  createLimiter?: RateLimiter;
  logger: Logger;
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
        return {
          name: b.name,
          available: a.ok,
          reason: a.ok ? null : a.reason,
          capabilities: b.capabilities(),
        };
      }),
    );
  }

  /** Readiness: at least one backend is available. */
  async ready(): Promise<{ ok: boolean; backends: BackendInfo[] }> {
    const backends = await this.listBackends();
    return { ok: backends.some((b) => b.available), backends };
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
      const a = await backend.available();
      if (!a.ok)
        throw new AppError('BACKEND_UNAVAILABLE', `backend ${requested} is unavailable: ${a.reason}`);
      return backend;
    }
    const reasons: string[] = [];
    for (const backend of this.#backends.values()) {
      const a = await backend.available();
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
   * Creates a session: checks the image against the allow list and the per-user creation rate, reserves a
   * `creating` record atomically within the live-session limit, then creates the sandbox. A backend failure
   * leaves the session `failed` with the reason; the error reaches the caller.
   */
  async create(ownerId: string, input: SessionCreateInput, audit: AuditContext): Promise<SessionRecord> {
    if (!this.#o.images.includes(input.image)) {
      throw new AppError(
        'IMAGE_NOT_ALLOWED',
        `image ${input.image} is not offered here; use one of: ${this.#o.images.join(', ')}`,
      );
    }
    const verdict = this.#createLimiter.take(ownerId);
    if (!verdict.allowed) throw rateLimitedError(verdict, 'session creations');
    const backend = await this.#pickBackend(input.backend);
    const resources = this.#resources(input.resources);
    const record = await this.#o.store
      .reserveSession(
        {
          id: newId('ses_'),
          ownerId,
          backend: backend.name,
          image: input.image,
          resources,
          instanceId: this.#o.instanceId,
        },
        this.#o.policy.maxLiveSessionsPerUser,
      )
      .catch(async (error: unknown) => {
        if (error instanceof AppError && error.code === 'SESSION_LIMIT') {
          await this.#audit({
            ...audit,
            action: 'session.create',
            outcome: 'denied',
            details: { reason: error.code },
          });
        }
        throw error;
      });
    let sandbox: Sandbox;
    try {
      sandbox = await backend.create({
        image: input.image,
        resources,
        network: 'none',
        labels: { ...this.#o.labels, 'studio.session': record.id, 'studio.owner': ownerId },
      });
    } catch (error) {
      const reason = isIsolationError(error) ? `${error.code}: ${error.message}` : 'the backend failed';
      this.#o.logger.warn('sandbox create failed', { sessionId: record.id, error });
      await this.#o.store.transitionSession(record.id, ['creating'], 'failed', { failureReason: reason });
      await this.#audit({ ...audit, action: 'session.create', outcome: 'failure', target: record.id });
      throw error;
    }
    const running = await this.#o.store.transitionSession(record.id, ['creating'], 'running', {
      sandboxId: sandbox.id,
    });
    if (!running) {
      // Destroyed while it was being created: nothing may outlive its session.
      await backend.destroy(sandbox.id).catch(() => undefined);
      throw new AppError('INVALID_STATE', `session ${record.id} was destroyed while it was being created`);
    }
    this.#handles.set(record.id, sandbox);
    await this.#audit({ ...audit, action: 'session.create', outcome: 'success', target: record.id });
    return running;
  }

  list(ownerId: string, includeEnded = false): Promise<SessionRecord[]> {
    return this.#o.store.listSessions(ownerId, { includeEnded });
  }

  /** The caller's session, or NOT_FOUND (auditing the attempt when the id belongs to someone else). */
  async get(ownerId: string, id: string, audit: AuditContext): Promise<SessionRecord> {
    const record = await this.#o.store.getSession(ownerId, id);
    if (record) return record;
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
    const sandbox = await this.#backendOf(record).get(record.sandboxId);
    this.#handles.set(record.id, sandbox);
    return sandbox;
  }

  #requireRunning(record: SessionRecord): void {
    if (record.state === 'running') return;
    const hint =
      record.state === 'stopped'
        ? 'start it with sessions.start'
        : record.state === 'creating'
          ? 'wait until it is running'
          : record.state === 'failed'
            ? `it failed (${record.failureReason ?? 'unknown'}); destroy it and create another`
            : 'create a new session';
    throw new AppError('INVALID_STATE', `session ${record.id} is ${record.state}: ${hint}`);
  }

  /** Runs `fn` with the sandbox of the caller's running session, and records activity for the idle timeout. */
  async withSandbox<T>(
    ownerId: string,
    id: string,
    audit: AuditContext,
    fn: (sandbox: Sandbox, record: SessionRecord) => Promise<T>,
  ): Promise<T> {
    const record = await this.get(ownerId, id, audit);
    this.#requireRunning(record);
    const sandbox = await this.#sandbox(record);
    this.#touch(record.id);
    return fn(sandbox, record);
  }

  #touch(id: string): void {
    const now = Date.now();
    if (now - (this.#lastTouch.get(id) ?? 0) < 5_000) return;
    this.#lastTouch.set(id, now);
    void this.#o.store.touchSession(id).catch(() => undefined);
  }

  async stop(ownerId: string, id: string, audit: AuditContext): Promise<SessionRecord> {
    const record = await this.get(ownerId, id, audit);
    if (record.state === 'stopped') return record;
    this.#requireRunning(record);
    await (await this.#sandbox(record)).stop();
    const updated = await this.#o.store.transitionSession(id, ['running'], 'stopped');
    await this.#audit({ ...audit, action: 'session.stop', outcome: 'success', target: id });
    return updated ?? this.get(ownerId, id, audit);
  }

  async start(ownerId: string, id: string, audit: AuditContext): Promise<SessionRecord> {
    const record = await this.get(ownerId, id, audit);
    if (record.state === 'running') return record;
    if (record.state !== 'stopped') this.#requireRunning(record);
    if (Date.now() - record.createdAt.getTime() > this.#o.policy.session.ttlMs) {
      throw new AppError('INVALID_STATE', `session ${id} reached its time limit; create a new session`);
    }
    await (await this.#sandbox(record)).start();
    const updated = await this.#o.store.transitionSession(id, ['stopped'], 'running');
    await this.#audit({ ...audit, action: 'session.start', outcome: 'success', target: id });
    return updated ?? this.get(ownerId, id, audit);
  }

  /** Destroys the sandbox and its workspace, then marks the session destroyed. Idempotent. */
  async destroy(ownerId: string, id: string, audit: AuditContext): Promise<SessionRecord> {
    const record = await this.get(ownerId, id, audit);
    if (record.state === 'destroyed') return record;
    const backend = this.#backendOf(record);
    if (record.sandboxId) await backend.destroy(record.sandboxId);
    this.#handles.delete(id);
    this.#lastTouch.delete(id);
    const updated = await this.#o.store.transitionSession(
      id,
      ['creating', 'running', 'stopped', 'failed'],
      'destroyed',
    );
    // A create that finished between our read and our update attached a sandbox we have not destroyed.
    if (updated?.sandboxId && updated.sandboxId !== record.sandboxId) {
      await backend.destroy(updated.sandboxId);
    }
    await this.#audit({ ...audit, action: 'session.destroy', outcome: 'success', target: id });
    return updated ?? this.get(ownerId, id, audit);
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
      if (record.state !== 'running') continue;
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
    const { idleTimeoutMs, ttlMs } = this.#o.policy.session;
    const stopped: string[] = [];
    for (const record of await this.#o.store.listLiveSessions()) {
      if (record.state !== 'running' || record.instanceId !== this.#o.instanceId) continue;
      const idle = now.getTime() - record.lastActiveAt.getTime() > idleTimeoutMs;
      const expired = now.getTime() - record.createdAt.getTime() > ttlMs;
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

  async close(): Promise<void> {
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    this.#handles.clear();
    await Promise.all([...this.#backends.values()].map((b) => b.close().catch(() => undefined)));
  }

  async #audit(event: AuditContext & AuditEvent): Promise<void> {
    await this.#o.store.audit(event).catch((error: unknown) => {
      this.#o.logger.error('audit write failed', { action: event.action, error });
    });
  }
}
