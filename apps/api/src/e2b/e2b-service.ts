import { createHash, randomBytes } from 'node:crypto';
import type { E2bSandboxRecord, SessionRecord } from '@studio/db';
import type { E2bListQuery, E2bNewSandbox, E2bState, SessionCreateInput } from '@studio/policy';
import type { Principal } from '../auth/auth.ts';
import type { AppDeps } from '../core/context.ts';
import { AppError } from '../core/errors.ts';
import { actorOf } from '../realtime/event-bus.ts';
import { assertMayMutate } from '../sessions/control.ts';
import type { AuditContext } from '../sessions/session-manager.ts';
import { e2bSandboxId, sessionIdOfSandbox } from './e2b-ids.ts';
import { ENVD_VERSION, tokenMatches } from './envd/index.ts';

/** E2B's API default when a create names no timeout (the SDK sends its own, 300 s). */
const DEFAULT_TIMEOUT_SECONDS = 15;
/** How often deadlines are looked for when none is known to be sooner (another replica may have set one). */
const DEADLINE_POLL_MS = 5_000;
/** How often records of sessions that ended elsewhere are removed. */
const CLEANUP_EVERY_MS = 10 * 60_000;
/** How long an envd target (sealed token opened, principal checked) is reused before it is read again. */
const TARGET_CACHE_MS = 5_000;

/** The response of create, connect and resume (E2B's `Sandbox`). */
export interface E2bSandboxView {
  templateID: string;
  sandboxID: string;
  alias?: string;
  clientID: string;
  envdVersion: string;
  envdAccessToken: string;
  trafficAccessToken: string | null;
  domain: string;
}

/** An entry of list (E2B's `ListedSandbox`); get adds `envdAccessToken` and `domain` (`SandboxDetail`). */
export interface E2bListedView {
  templateID: string;
  alias?: string;
  sandboxID: string;
  clientID: string;
  startedAt: string;
  endAt: string;
  cpuCount: number;
  memoryMB: number;
  diskSizeMB: number;
  metadata: Record<string, string>;
  state: E2bState;
  envdVersion: string;
}

/** What envd requests for a sandbox act as and are checked against (see `envd/envd-handler.ts`). */
export interface E2bEnvdTarget {
  sessionId: string;
  sandboxId: string;
  principal: Principal;
  accessToken: string;
  envs: Record<string, string>;
  /** The sandbox's ports need `e2b-traffic-access-token` (E2B's `network.allowPublicTraffic: false`). */
  trafficToken: string | null;
}

/** Options of {@link E2bService}. */
export interface E2bServiceOptions {
  /** The domain SDKs reach sandboxes under (env `e2bDomain`, else the local preview listener's). */
  domain: () => string;
  /** Called when a sandbox is killed or paused: its envd processes and watches end. */
  onGone?: (sessionId: string) => void;
  /** A node service's instance id (issue 23): it keeps the deadlines of its own sandboxes only. */
  instanceId?: string;
}

const CLIENT_ID = 'studio';

/** The E2B state a live session shows as; undefined: not listed (creating, destroying, ended). */
function e2bStateOf(record: SessionRecord): E2bState | undefined {
  if (record.state === 'running') return 'running';
  // A stopped session is resumable as a paused one is: connect starts it again.
  if (record.state === 'paused' || record.state === 'stopped') return 'paused';
  return undefined;
}

/** A sandbox's traffic token, derived from its envd token (so nothing more is stored). */
function trafficTokenOf(accessToken: string): string {
  return createHash('sha256').update(`e2b traffic\0${accessToken}`).digest('base64url');
}

/**
 * E2B's control plane over Studio's sessions (issue 21): an E2B sandbox is a session of the API token's user.
 * Create, list, get, kill, timeout, pause, resume and connect call the SessionManager, so the session limit,
 * templates, policy, audit and events are Studio's. What E2B adds is kept in the store (`e2b_sandboxes`):
 * metadata, env vars (sealed), the envd access token (sealed) and the deadline, which a timer enforces.
 */
export class E2bService {
  readonly #deps: AppDeps;
  readonly #o: E2bServiceOptions;
  readonly #targets = new Map<string, { target: E2bEnvdTarget; untilMs: number }>();
  readonly #opened = new Map<string, { sealed: string; value: string }>();
  #timer: NodeJS.Timeout | undefined;
  #nextDeadlineMs = Number.POSITIVE_INFINITY;
  #closed = false;
  #lastCleanupMs = 0;
  #sweeping: Promise<void> | undefined;

  constructor(deps: AppDeps, options: E2bServiceOptions) {
    this.#deps = deps;
    this.#o = options;
  }

  /** The domain sandboxes are reached under, as create and connect tell SDKs. */
  get domain(): string {
    return this.#o.domain();
  }

  // ------------------------------------------------------------------------------------------ lifecycle

  async create(principal: Principal, body: E2bNewSandbox, audit: AuditContext): Promise<E2bSandboxView> {
    const template = body.templateID;
    // The E2B deadline governs it (E2B's model), not Studio's idle auto-pause; the session TTL still applies.
    const input: Record<string, unknown> = { keepAwake: true };
    // `base` is E2B's default template: Studio's default one.
    if (template !== undefined && template !== 'base') input.template = template;
    const allowOut = body.network?.allowOut ?? [];
    if (allowOut.length > 0) input.network = { mode: 'allowlist', allow: allowOut };
    else if (body.allow_internet_access === true && this.#deps.policy.egress.allowOpen) {
      input.network = { mode: 'open', allow: [] };
    }
    // Else Studio's default (no network). `allow_internet_access: true` is what older SDKs send for "the default"
    // (2.10 always does): refusing it would refuse every create from them where open egress is not allowed.
    // Egress to listed hosts stays available through network.allowOut.

    const parsed = this.#deps.schemas.sessionCreateInput.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new AppError('INPUT_INVALID', `${issue?.path.join('.') || 'input'}: ${issue?.message}`);
    }
    const record = await this.#deps.sessions.create(
      principal.userId,
      parsed.data as SessionCreateInput,
      audit,
    );
    this.#announce(principal, record);
    const timeout = body.timeout ?? DEFAULT_TIMEOUT_SECONDS;
    const accessToken = randomBytes(32).toString('base64url');
    const publicTraffic = body.network?.allowPublicTraffic ?? true;
    const envs = body.envVars ?? {};
    try {
      await this.#deps.store.putE2bSandbox({
        sessionId: record.id,
        ownerId: principal.userId,
        tokenId: principal.tokenId ?? null,
        metadata: body.metadata ?? {},
        envsSealed:
          Object.keys(envs).length === 0
            ? null
            : this.#deps.vault.seal(principal.userId, envsName(record.id), JSON.stringify(envs)),
        tokenSealed: this.#deps.vault.seal(principal.userId, tokenName(record.id), accessToken),
        endsAt: new Date(Date.now() + timeout * 1000),
        onTimeout: body.autoPause === true ? 'pause' : 'kill',
        publicTraffic,
        origin: 'e2b',
      });
    } catch (error) {
      // Without its record nobody could reach it: do not leave a session the caller cannot use.
      await this.#deps.sessions.destroy(principal.userId, record.id, audit).catch(() => undefined);
      throw error;
    }
    this.#scheduleBy(Date.now() + timeout * 1000);
    return this.#view(record, accessToken, publicTraffic);
  }

  /** The caller's sandboxes (live sessions) matching `query`, a page of them, and the token of the next page. */
  async list(principal: Principal, query: E2bListQuery): Promise<{ items: E2bListedView[]; next?: string }> {
    const records = await this.#deps.sessions.list(principal.userId);
    const rows = new Map(
      (await this.#deps.store.listE2bSandboxes(principal.userId)).map((r) => [r.sessionId, r]),
    );
    const startedAfter = query.startedAfter === undefined ? undefined : Date.parse(query.startedAfter);
    const names = await this.#templateNames(records);
    const items: E2bListedView[] = [];
    for (const record of records) {
      const state = e2bStateOf(record);
      if (state === undefined) continue;
      if (query.state !== undefined && query.state.length > 0 && !query.state.includes(state)) continue;
      if (startedAfter !== undefined && record.createdAt.getTime() < startedAfter) continue;
      const row = rows.get(record.id);
      const metadata = row?.metadata ?? {};
      if (query.metadata && Object.entries(query.metadata).some(([k, v]) => metadata[k] !== v)) continue;
      const view = this.#listed(record, row, names.get(record.templateId ?? '') ?? undefined);
      if (query.template !== undefined && query.template !== view.templateID && query.template !== view.alias)
        continue;
      items.push(view);
    }
    items.sort((a, b) =>
      query.order === 'asc' ? a.startedAt.localeCompare(b.startedAt) : b.startedAt.localeCompare(a.startedAt),
    );
    const offset = query.nextToken === undefined ? 0 : decodeCursor(query.nextToken);
    const page = items.slice(offset, offset + query.limit);
    const more = offset + query.limit < items.length;
    return { items: page, ...(more ? { next: encodeCursor(offset + query.limit) } : {}) };
  }

  /** One of the caller's sandboxes (E2B's `SandboxDetail`). */
  async get(
    principal: Principal,
    sandboxId: string,
    audit: AuditContext,
  ): Promise<E2bListedView & { envdAccessToken?: string; domain: string }> {
    const record = await this.#live(principal, sandboxId, audit);
    const row = await this.#deps.store.getE2bSandbox(record.id);
    const names = await this.#templateNames([record]);
    const view = this.#listed(record, row, names.get(record.templateId ?? '') ?? undefined);
    const token = row ? this.#openToken(row) : undefined;
    return { ...view, ...(token ? { envdAccessToken: token } : {}), domain: this.#o.domain() };
  }

  async kill(principal: Principal, sandboxId: string, audit: AuditContext): Promise<void> {
    const record = await this.#live(principal, sandboxId, audit);
    await this.#destroy(principal.userId, record.id, audit, principal);
  }

  /** Sets the deadline to `timeout` seconds from now (E2B's setTimeout: it may shorten it too). */
  async setTimeout(
    principal: Principal,
    sandboxId: string,
    timeout: number,
    audit: AuditContext,
  ): Promise<void> {
    const record = await this.#live(principal, sandboxId, audit);
    // As sessions.setKeepAwake: how long the session lives is the person's while they hold control.
    await assertMayMutate(this.#deps.store, principal, record.id);
    await this.#ensureRow(principal, record);
    const endsAt = Date.now() + timeout * 1000;
    await this.#deps.store.setE2bDeadline(record.id, new Date(endsAt));
    this.#scheduleBy(endsAt);
  }

  /** Pauses a running sandbox; false when it was already paused (E2B answers 409 then). */
  async pause(principal: Principal, sandboxId: string, audit: AuditContext): Promise<boolean> {
    const record = await this.#live(principal, sandboxId, audit);
    if (e2bStateOf(record) === 'paused') return false;
    // As sessions.pause: a pause ends the person's terminals.
    await assertMayMutate(this.#deps.store, principal, record.id);
    const paused = await this.#deps.sessions.pause(principal.userId, record.id, audit);
    this.#announce(principal, paused);
    this.#o.onGone?.(record.id);
    // A paused sandbox has no deadline (E2B): connect or resume sets a new one.
    await this.#deps.store.setE2bDeadline(record.id, null);
    return true;
  }

  /**
   * Resumes a paused (or stopped) sandbox, or only extends its deadline when it runs (E2B's connect: "TTL is only
   * extended"). `resumed` says whether it was paused (E2B answers 201 then, 200 otherwise).
   */
  async connect(
    principal: Principal,
    sandboxId: string,
    timeout: number | undefined,
    audit: AuditContext,
  ): Promise<{ view: E2bSandboxView; resumed: boolean }> {
    let record = await this.#live(principal, sandboxId, audit);
    const resumed = record.state !== 'running';
    if (record.state === 'paused')
      record = await this.#deps.sessions.resume(principal.userId, record.id, audit);
    else if (record.state === 'stopped')
      record = await this.#deps.sessions.start(principal.userId, record.id, audit);
    if (resumed) this.#announce(principal, record);
    const row = await this.#ensureRow(principal, record);
    // A session made in Studio keeps Studio's rules: the SDK sends a timeout on every connect (its default too),
    // and a person's session must not end because an agent connected to it. Only setTimeout gives it a deadline.
    if (timeout !== undefined && row.origin === 'e2b') {
      const endsAt = Date.now() + timeout * 1000;
      // Only extended: a later deadline already set stays; a session Studio's own rules govern gets one now.
      if (row.endsAt === null || row.endsAt.getTime() < endsAt || resumed) {
        await this.#deps.store.setE2bDeadline(record.id, new Date(endsAt));
        this.#scheduleBy(endsAt);
      }
    }
    const token = this.#openToken(row);
    return { view: await this.#view(record, token, row.publicTraffic), resumed };
  }

  // ------------------------------------------------------------------------------------------ envd

  /**
   * Who an envd request for `sandboxId` acts as, and the token it must carry. NOT_FOUND for an unknown, ended or
   * never-connected sandbox (nothing was ever issued for it); UNAUTHENTICATED when the API token that created or
   * last connected it was revoked or expired (connect again with a valid key).
   */
  async envdTarget(sandboxId: string): Promise<E2bEnvdTarget> {
    const hit = this.#targets.get(sandboxId);
    if (hit && hit.untilMs > Date.now()) return hit.target;
    const sessionId = sessionIdOfSandbox(sandboxId);
    const record = sessionId === undefined ? undefined : await this.#deps.store.getSessionById(sessionId);
    if (!record || e2bStateOf(record) === undefined) throw notFound(sandboxId);
    const row = await this.#deps.store.getE2bSandbox(record.id);
    if (!row || row.tokenId === null) throw notFound(sandboxId);
    const principal = await this.#deps.auth.apiTokenPrincipal(row.ownerId, row.tokenId);
    const accessToken = this.#openToken(row);
    const target: E2bEnvdTarget = {
      sessionId: record.id,
      sandboxId,
      principal,
      accessToken,
      envs: row.envsSealed
        ? (JSON.parse(this.#deps.vault.open(row.ownerId, envsName(record.id), row.envsSealed)) as Record<
            string,
            string
          >)
        : {},
      trafficToken: row.publicTraffic ? null : trafficTokenOf(accessToken),
    };
    if (this.#targets.size > 10_000) this.#targets.clear();
    this.#targets.set(sandboxId, { target, untilMs: Date.now() + TARGET_CACHE_MS });
    return target;
  }

  /**
   * The sandbox whose access token `matches` (a signed file URL that names no sandbox: the SDK drops the path of a
   * fixed E2B_SANDBOX_URL). Tries each live E2B sandbox; opened tokens are kept while their sealed form holds.
   */
  async findSigned(matches: (accessToken: string) => boolean): Promise<string | undefined> {
    for (const row of await this.#deps.store.allE2bSandboxes()) {
      let token = this.#opened.get(row.sessionId);
      if (token?.sealed !== row.tokenSealed) {
        token = { sealed: row.tokenSealed, value: this.#openToken(row) };
        if (this.#opened.size > 10_000) this.#opened.clear();
        this.#opened.set(row.sessionId, token);
      }
      if (matches(token.value)) return e2bSandboxId(row.sessionId);
    }
    return undefined;
  }

  /** Whether `sandboxId` names a running session (envd's /health). */
  async isRunning(sandboxId: string): Promise<boolean> {
    const sessionId = sessionIdOfSandbox(sandboxId);
    const record = sessionId === undefined ? undefined : await this.#deps.store.getSessionById(sessionId);
    return record?.state === 'running';
  }

  /**
   * Who a request for a port of `sandboxId` by host name reaches (`sandbox.getHost(port)`), or why not: public as
   * in E2B, unless the sandbox was made with `network.allowPublicTraffic: false`, when the request must carry its
   * traffic token in `e2b-traffic-access-token`.
   */
  async portAccess(
    sandboxId: string,
    trafficHeader: string | undefined,
  ): Promise<{ userId: string; sessionId: string } | string> {
    let target: E2bEnvdTarget;
    try {
      target = await this.envdTarget(sandboxId);
    } catch {
      return `sandbox ${sandboxId} was not found or is not running`;
    }
    if (target.trafficToken !== null && !tokenMatches(trafficHeader, target.trafficToken)) {
      return `the ports of sandbox ${sandboxId} need its trafficAccessToken in the e2b-traffic-access-token header`;
    }
    return { userId: target.principal.userId, sessionId: target.sessionId };
  }

  // ------------------------------------------------------------------------------------------ deadlines

  /** Starts enforcing deadlines: killed (or paused, with autoPause) when due. */
  start(): void {
    this.#closed = false;
    this.#arm(0);
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Runs the deadline sweep once now (tests; the timer does it on its own). */
  sweep(now: number = Date.now()): Promise<void> {
    this.#sweeping ??= this.#sweep(now).finally(() => {
      this.#sweeping = undefined;
    });
    return this.#sweeping;
  }

  async #sweep(now: number): Promise<void> {
    if (now - this.#lastCleanupMs > CLEANUP_EVERY_MS) {
      // Records of sessions that ended outside E2B (destroyed in the IDE, failed): nothing reaches them any more.
      this.#lastCleanupMs = now;
      await this.#deps.store.deleteEndedE2bSandboxes();
    }
    const due = await this.#deps.store.dueE2bSandboxes(new Date(now + 50), 100, this.#o.instanceId);
    for (const row of due) {
      const audit: AuditContext = { actorId: null, ip: null, requestId: null };
      const record = await this.#deps.store.getSessionById(row.sessionId);
      try {
        if (!record || e2bStateOf(record) === undefined) {
          if (!record || record.state === 'destroyed' || record.state === 'failed') {
            await this.#deps.store.deleteE2bSandbox(row.sessionId);
          }
          continue;
        }
        if (row.onTimeout === 'pause' && record.state === 'running') {
          await this.#deps.sessions.pause(row.ownerId, row.sessionId, audit, 'idle');
          this.#o.onGone?.(row.sessionId);
          await this.#deps.store.setE2bDeadline(row.sessionId, null);
        } else if (row.onTimeout === 'pause') {
          await this.#deps.store.setE2bDeadline(row.sessionId, null);
        } else {
          await this.#destroy(row.ownerId, row.sessionId, audit, null);
        }
        this.#deps.logger.info('e2b sandbox timed out', { sessionId: row.sessionId, action: row.onTimeout });
      } catch (error) {
        this.#deps.logger.warn('e2b timeout failed; retried at the next sweep', {
          sessionId: row.sessionId,
          error,
        });
      }
    }
  }

  #scheduleBy(atMs: number): void {
    if (this.#closed || this.#timer === undefined) return;
    if (atMs < this.#nextDeadlineMs) this.#arm(Math.max(0, atMs - Date.now()));
  }

  #arm(delayMs: number): void {
    if (this.#closed) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#nextDeadlineMs = Date.now() + delayMs;
    this.#timer = setTimeout(() => {
      void this.sweep()
        .catch((error: unknown) => this.#deps.logger.warn('e2b deadline sweep failed', { error }))
        .then(async () => {
          const [next] = await this.#deps.store
            .dueE2bSandboxes(new Date(8.64e15), 1, this.#o.instanceId)
            .catch(() => []);
          const untilNext = next?.endsAt ? next.endsAt.getTime() - Date.now() : DEADLINE_POLL_MS;
          this.#arm(Math.max(0, Math.min(DEADLINE_POLL_MS, untilNext)));
        });
    }, delayMs);
    this.#timer.unref();
  }

  // ------------------------------------------------------------------------------------------ helpers

  async #destroy(ownerId: string, sessionId: string, audit: AuditContext, principal: Principal | null) {
    this.#o.onGone?.(sessionId);
    const record = await this.#deps.sessions.destroy(ownerId, sessionId, audit);
    if (principal) this.#announce(principal, record);
    else {
      // The timeout the token set ran out: the token is the actor, named for what happened.
      const row = await this.#deps.store.getE2bSandbox(sessionId);
      const actor = {
        kind: 'token' as const,
        userId: ownerId,
        ...(row?.tokenId ? { tokenId: row.tokenId } : {}),
        name: 'E2B timeout',
      };
      this.#deps.events.publish(sessionId, actor, { type: 'session.status', state: record.state });
    }
    if (record.state === 'destroyed') this.#deps.events.drop(sessionId);
    this.#targets.delete(e2bSandboxId(sessionId));
    await this.#deps.store.deleteE2bSandbox(sessionId);
  }

  /** The caller's session behind `sandboxId` that E2B can see (running, paused or stopped); else NOT_FOUND. */
  async #live(principal: Principal, sandboxId: string, audit: AuditContext): Promise<SessionRecord> {
    const sessionId = sessionIdOfSandbox(sandboxId);
    if (sessionId === undefined) throw notFound(sandboxId);
    const record = await this.#deps.sessions
      .get(principal.userId, sessionId, audit)
      .catch((error: unknown) => {
        if (error instanceof AppError && error.code === 'NOT_FOUND') throw notFound(sandboxId);
        throw error;
      });
    if (e2bStateOf(record) === undefined) throw notFound(sandboxId);
    return record;
  }

  /**
   * The E2B record of a session, made when E2B never saw it (a session made in Studio: a new access token, no
   * deadline, origin `studio`).
   */
  async #ensureRow(principal: Principal, record: SessionRecord): Promise<E2bSandboxRecord> {
    const row = await this.#deps.store.getE2bSandbox(record.id);
    if (row && row.tokenId === (principal.tokenId ?? null)) return row;
    const saved = await this.#deps.store.putE2bSandbox({
      sessionId: record.id,
      ownerId: record.ownerId,
      // Its envd calls act as the token that connected last (a revoked creator's token no longer reaches it).
      tokenId: principal.tokenId ?? null,
      metadata: row?.metadata ?? {},
      envsSealed: row?.envsSealed ?? null,
      tokenSealed:
        row?.tokenSealed ??
        this.#deps.vault.seal(record.ownerId, tokenName(record.id), randomBytes(32).toString('base64url')),
      endsAt: row?.endsAt ?? null,
      // Made in Studio: an E2B deadline pauses it (workspace kept), never destroys it.
      onTimeout: row?.onTimeout ?? 'pause',
      publicTraffic: row?.publicTraffic ?? true,
      origin: row?.origin ?? 'studio',
    });
    this.#targets.delete(e2bSandboxId(record.id));
    return saved;
  }

  #openToken(row: E2bSandboxRecord): string {
    return this.#deps.vault.open(row.ownerId, tokenName(row.sessionId), row.tokenSealed);
  }

  async #templateNames(records: SessionRecord[]): Promise<Map<string, string>> {
    const ids = [...new Set(records.map((r) => r.templateId).filter((id): id is string => id !== null))];
    const names = new Map<string, string>();
    for (const id of ids) {
      const t = await this.#deps.store.getTemplate(id);
      if (t) names.set(id, t.name);
    }
    return names;
  }

  async #view(record: SessionRecord, accessToken: string, publicTraffic: boolean): Promise<E2bSandboxView> {
    const names = await this.#templateNames([record]);
    const alias = record.templateId === null ? 'base' : names.get(record.templateId);
    return {
      templateID: record.templateId ?? 'base',
      sandboxID: e2bSandboxId(record.id),
      ...(alias ? { alias } : {}),
      clientID: CLIENT_ID,
      envdVersion: ENVD_VERSION,
      envdAccessToken: accessToken,
      trafficAccessToken: publicTraffic ? null : trafficTokenOf(accessToken),
      domain: this.#o.domain(),
    };
  }

  #listed(record: SessionRecord, row: E2bSandboxRecord | undefined, name: string | undefined): E2bListedView {
    const ttlEnd =
      record.createdAt.getTime() +
      this.#deps.policy.session.ttlMs +
      (record.pausedMs ?? 0) +
      (record.pausedAt ? Date.now() - record.pausedAt.getTime() : 0);
    const endAt = Math.min(row?.endsAt?.getTime() ?? ttlEnd, ttlEnd);
    const alias = record.templateId === null ? 'base' : name;
    return {
      templateID: record.templateId ?? 'base',
      ...(alias ? { alias } : {}),
      sandboxID: e2bSandboxId(record.id),
      clientID: CLIENT_ID,
      startedAt: record.createdAt.toISOString(),
      endAt: new Date(endAt).toISOString(),
      cpuCount: Math.max(1, Math.round(record.resources.cpus)),
      memoryMB: Math.round(record.resources.memoryBytes / 2 ** 20),
      diskSizeMB: Math.round(record.resources.diskBytes / 2 ** 20),
      metadata: row?.metadata ?? {},
      state: e2bStateOf(record) ?? 'running',
      envdVersion: ENVD_VERSION,
    };
  }

  #announce(principal: Principal, record: SessionRecord): void {
    this.#deps.events.publish(record.id, actorOf(principal), { type: 'session.status', state: record.state });
  }

  /** Records an E2B control-plane change with the API token that made it (the session's own audit has the user). */
  audit(principal: Principal, audit: AuditContext, action: string, sandboxId: string): Promise<void> {
    return this.#audit(principal, audit, `e2b.${action}`, sessionIdOfSandbox(sandboxId) ?? sandboxId, {
      sandboxId,
    });
  }

  async #audit(
    principal: Principal,
    audit: AuditContext,
    action: string,
    target: string,
    details: Record<string, unknown>,
  ): Promise<void> {
    await this.#deps.store
      .audit({
        ...audit,
        action,
        outcome: 'success',
        target,
        details: { ...details, tokenId: principal.tokenId },
      })
      .catch((error: unknown) => this.#deps.logger.warn('audit write failed', { action, error }));
  }
}

const envsName = (sessionId: string) => `e2b-envs:${sessionId}`;
const tokenName = (sessionId: string) => `e2b-token:${sessionId}`;

function notFound(sandboxId: string): AppError {
  return new AppError(
    'NOT_FOUND',
    `sandbox ${sandboxId} was not found: it never existed, was killed or timed out, or is not yours`,
  );
}

function encodeCursor(offset: number): string {
  return Buffer.from(`o:${offset}`).toString('base64url');
}

function decodeCursor(token: string): number {
  const m = /^o:(\d{1,6})$/.exec(Buffer.from(token, 'base64url').toString());
  if (!m)
    throw new AppError('INPUT_INVALID', 'nextToken is not one this server gave; list again from the start');
  return Number(m[1]);
}
