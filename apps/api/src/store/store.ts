import { AppError } from '../core/errors.ts';
import type { Db, Queryable } from './db.ts';
import { migrate } from './migrations.ts';

export type Role = 'admin' | 'user';
export type SessionState = 'creating' | 'running' | 'stopped' | 'destroyed' | 'failed';
/** States that count against the per-user limit: the session holds (or is getting) a sandbox and workspace. */
export const LIVE_STATES: readonly SessionState[] = ['creating', 'running', 'stopped'];

export interface UserRecord {
  id: string;
  username: string;
  passwordHash: string;
  role: Role;
  disabledAt: Date | null;
  createdAt: Date;
}

export interface LoginRecord {
  id: string;
  userId: string;
  createdAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
}

export interface ApiTokenRecord {
  id: string;
  userId: string;
  name: string;
  tokenHash: string;
  /** Made for an AI agent: its events name the actor kind `agent`. */
  agent: boolean;
  createdAt: Date;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

export interface SessionResources {
  memoryBytes: number;
  cpus: number;
  pids: number;
  diskBytes: number;
  inodes: number;
  tmpBytes: number;
}

export interface SessionRecord {
  id: string;
  ownerId: string;
  backend: string;
  image: string;
  resources: SessionResources;
  instanceId: string;
  sandboxId: string | null;
  state: SessionState;
  failureReason: string | null;
  createdAt: Date;
  lastActiveAt: Date;
  destroyedAt: Date | null;
  /** The person (a login of the owner) holding control of the session, or null. */
  control: SessionControl | null;
}

/** Who holds control of a session: while set, API tokens may not change it (HUMAN_HAS_CONTROL). */
export interface SessionControl {
  loginId: string;
  name: string;
  since: Date;
}

export type AuditOutcome = 'success' | 'failure' | 'denied';

/** One security-relevant event. Never holds secrets (passwords, tokens, cookies). */
export interface AuditEvent {
  action: string;
  outcome: AuditOutcome;
  actorId?: string | null | undefined;
  target?: string | null | undefined;
  ip?: string | null | undefined;
  requestId?: string | null | undefined;
  details?: Record<string, unknown> | undefined;
}

export interface AuditRecord extends Required<Omit<AuditEvent, 'details'>> {
  id: string;
  at: Date;
  details: Record<string, unknown>;
}

const LIVE_SQL = `('creating', 'running', 'stopped')`;

type Row = Record<string, unknown>;
const date = (v: unknown): Date => (v instanceof Date ? v : new Date(String(v)));
const dateOrNull = (v: unknown): Date | null => (v === null || v === undefined ? null : date(v));
const json = <T>(v: unknown): T => (typeof v === 'string' ? (JSON.parse(v) as T) : (v as T));

function toUser(r: Row): UserRecord {
  return {
    id: String(r.id),
    username: String(r.username),
    passwordHash: String(r.password_hash),
    role: r.role as Role,
    disabledAt: dateOrNull(r.disabled_at),
    createdAt: date(r.created_at),
  };
}

function toLogin(r: Row): LoginRecord {
  return {
    id: String(r.id),
    userId: String(r.user_id),
    createdAt: date(r.created_at),
    expiresAt: date(r.expires_at),
    revokedAt: dateOrNull(r.revoked_at),
  };
}

function toToken(r: Row): ApiTokenRecord {
  return {
    id: String(r.id),
    userId: String(r.user_id),
    name: String(r.name),
    tokenHash: String(r.token_hash),
    agent: r.agent === true,
    createdAt: date(r.created_at),
    expiresAt: dateOrNull(r.expires_at),
    lastUsedAt: dateOrNull(r.last_used_at),
    revokedAt: dateOrNull(r.revoked_at),
  };
}

function toSession(r: Row): SessionRecord {
  return {
    id: String(r.id),
    ownerId: String(r.owner_id),
    backend: String(r.backend),
    image: String(r.image),
    resources: json<SessionResources>(r.resources),
    instanceId: String(r.instance_id),
    sandboxId: r.sandbox_id === null ? null : String(r.sandbox_id),
    state: r.state as SessionState,
    failureReason: r.failure_reason === null ? null : String(r.failure_reason),
    createdAt: date(r.created_at),
    lastActiveAt: date(r.last_active_at),
    destroyedAt: dateOrNull(r.destroyed_at),
    control:
      r.control_holder_login_id === null || r.control_holder_login_id === undefined
        ? null
        : {
            loginId: String(r.control_holder_login_id),
            name: String(r.control_holder_name ?? ''),
            since: date(r.control_taken_at),
          },
  };
}

function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === '23505';
}

/** Input of {@link Store.reserveSession}. */
export interface NewSession {
  id: string;
  ownerId: string;
  backend: string;
  image: string;
  resources: SessionResources;
  instanceId: string;
}

/**
 * Every record of the API, over one PostgreSQL dialect (PGlite or a server). Methods that take an owner id
 * only ever see that owner's rows: ownership is part of the query, never a check after it.
 */
export class Store {
  readonly db: Db;

  private constructor(db: Db) {
    this.db = db;
  }

  /** Wraps an open database and brings its schema up to date. */
  static async open(db: Db): Promise<Store> {
    await migrate(db);
    return new Store(db);
  }

  async ping(): Promise<void> {
    await this.db.query('SELECT 1');
  }

  close(): Promise<void> {
    return this.db.close();
  }

  // ---------------------------------------------------------------------------------------------- users

  async createUser(user: {
    id: string;
    username: string;
    passwordHash: string;
    role: Role;
  }): Promise<UserRecord> {
    try {
      const [row] = await this.db.query<Row>(
        'INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, $3, $4) RETURNING *',
        [user.id, user.username, user.passwordHash, user.role],
      );
      return toUser(row as Row);
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new AppError('ALREADY_EXISTS', `username ${user.username} is taken; choose another`);
      }
      throw error;
    }
  }

  async countUsers(): Promise<number> {
    const [row] = await this.db.query<{ n: number }>('SELECT count(*)::int AS n FROM users');
    return row?.n ?? 0;
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    const [row] = await this.db.query<Row>('SELECT * FROM users WHERE id = $1', [id]);
    return row ? toUser(row) : undefined;
  }

  async getUserByUsername(username: string): Promise<UserRecord | undefined> {
    const [row] = await this.db.query<Row>('SELECT * FROM users WHERE username = $1', [username]);
    return row ? toUser(row) : undefined;
  }

  async listUsers(): Promise<UserRecord[]> {
    return (await this.db.query<Row>('SELECT * FROM users ORDER BY created_at, username')).map(toUser);
  }

  /** Disables a user and, in the same transaction, revokes every login and API token it holds. */
  async disableUser(id: string): Promise<UserRecord | undefined> {
    return this.db.transaction(async (tx) => {
      const [row] = await tx.query<Row>(
        'UPDATE users SET disabled_at = coalesce(disabled_at, now()) WHERE id = $1 RETURNING *',
        [id],
      );
      if (!row) return undefined;
      await tx.query('UPDATE logins SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL', [id]);
      await tx.query('UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL', [
        id,
      ]);
      return toUser(row);
    });
  }

  // --------------------------------------------------------------------------------------------- logins

  async createLogin(login: { id: string; userId: string; expiresAt: Date }): Promise<void> {
    await this.db.query('INSERT INTO logins (id, user_id, expires_at) VALUES ($1, $2, $3)', [
      login.id,
      login.userId,
      login.expiresAt,
    ]);
  }

  async getLogin(id: string): Promise<LoginRecord | undefined> {
    const [row] = await this.db.query<Row>('SELECT * FROM logins WHERE id = $1', [id]);
    return row ? toLogin(row) : undefined;
  }

  /** A login with its user, in one query (every request authenticated by JWT runs this). */
  async getLoginWithUser(id: string): Promise<{ login: LoginRecord; user: UserRecord } | undefined> {
    const [row] = await this.db.query<Row>(
      `SELECT l.id AS l_id, l.user_id AS l_user_id, l.created_at AS l_created_at, l.expires_at AS l_expires_at,
              l.revoked_at AS l_revoked_at, u.*
       FROM logins l JOIN users u ON u.id = l.user_id WHERE l.id = $1`,
      [id],
    );
    if (!row) return undefined;
    return {
      login: toLogin({
        id: row.l_id,
        user_id: row.l_user_id,
        created_at: row.l_created_at,
        expires_at: row.l_expires_at,
        revoked_at: row.l_revoked_at,
      }),
      user: toUser(row),
    };
  }

  /** An API token with its user, in one query. */
  async findApiTokenWithUser(
    tokenHash: string,
  ): Promise<{ token: ApiTokenRecord; user: UserRecord } | undefined> {
    const [row] = await this.db.query<Row>(
      `SELECT t.id AS t_id, t.user_id AS t_user_id, t.name AS t_name, t.token_hash AS t_token_hash,
              t.created_at AS t_created_at, t.expires_at AS t_expires_at, t.last_used_at AS t_last_used_at,
              t.revoked_at AS t_revoked_at, t.agent AS t_agent, u.*
       FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1`,
      [tokenHash],
    );
    if (!row) return undefined;
    return {
      token: toToken({
        id: row.t_id,
        user_id: row.t_user_id,
        name: row.t_name,
        token_hash: row.t_token_hash,
        created_at: row.t_created_at,
        expires_at: row.t_expires_at,
        last_used_at: row.t_last_used_at,
        revoked_at: row.t_revoked_at,
        agent: row.t_agent,
      }),
      user: toUser(row),
    };
  }

  async revokeLogin(id: string): Promise<void> {
    await this.db.query('UPDATE logins SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL', [id]);
  }

  // ----------------------------------------------------------------------------------------- api tokens

  async createApiToken(token: {
    id: string;
    userId: string;
    name: string;
    tokenHash: string;
    expiresAt: Date | null;
    agent?: boolean;
  }): Promise<ApiTokenRecord> {
    const [row] = await this.db.query<Row>(
      `INSERT INTO api_tokens (id, user_id, name, token_hash, expires_at, agent)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`,
      [token.id, token.userId, token.name, token.tokenHash, token.expiresAt, token.agent === true],
    );
    return toToken(row as Row);
  }

  async findApiTokenByHash(tokenHash: string): Promise<ApiTokenRecord | undefined> {
    const [row] = await this.db.query<Row>('SELECT * FROM api_tokens WHERE token_hash = $1', [tokenHash]);
    return row ? toToken(row) : undefined;
  }

  async listApiTokens(userId: string): Promise<ApiTokenRecord[]> {
    return (
      await this.db.query<Row>('SELECT * FROM api_tokens WHERE user_id = $1 ORDER BY created_at, id', [
        userId,
      ])
    ).map(toToken);
  }

  /** Revokes one of `userId`'s tokens; false when it has no such token (or it was already revoked). */
  async revokeApiToken(userId: string, id: string): Promise<boolean> {
    const rows = await this.db.query(
      'UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING id',
      [id, userId],
    );
    return rows.length > 0;
  }

  async touchApiToken(id: string): Promise<void> {
    await this.db.query('UPDATE api_tokens SET last_used_at = now() WHERE id = $1', [id]);
  }

  // ------------------------------------------------------------------------------------------- sessions

  /**
   * Records a new session in state `creating` if its owner holds fewer than `maxLive` live sessions.
   *
   * Atomic under concurrency: the owner's user row is locked (`SELECT … FOR UPDATE`) for the transaction, so
   * concurrent creates for one user run the count-and-insert one after another, on PostgreSQL (READ COMMITTED
   * re-reads after the lock) and on PGlite alike. Throws SESSION_LIMIT when the owner is at the limit.
   */
  async reserveSession(session: NewSession, maxLive: number): Promise<SessionRecord> {
    return this.db.transaction(async (tx) => {
      const owner = await tx.query('SELECT id FROM users WHERE id = $1 AND disabled_at IS NULL FOR UPDATE', [
        session.ownerId,
      ]);
      if (owner.length === 0) throw new AppError('UNAUTHENTICATED', 'your account is disabled or gone');
      const live = await countLive(tx, session.ownerId);
      if (live >= maxLive) {
        throw new AppError(
          'SESSION_LIMIT',
          `you already have ${live} live sessions (the limit is ${maxLive}); destroy one with sessions.destroy first`,
        );
      }
      const [row] = await tx.query<Row>(
        `INSERT INTO sessions (id, owner_id, backend, image, resources, instance_id, state)
         VALUES ($1, $2, $3, $4, $5, $6, 'creating') RETURNING *`,
        [
          session.id,
          session.ownerId,
          session.backend,
          session.image,
          JSON.stringify(session.resources),
          session.instanceId,
        ],
      );
      return toSession(row as Row);
    });
  }

  async countLiveSessions(ownerId: string): Promise<number> {
    return countLive(this.db, ownerId);
  }

  /** The session `id` if `ownerId` owns it; undefined otherwise (whether it exists or not). */
  async getSession(ownerId: string, id: string): Promise<SessionRecord | undefined> {
    const [row] = await this.db.query<Row>('SELECT * FROM sessions WHERE id = $1 AND owner_id = $2', [
      id,
      ownerId,
    ]);
    return row ? toSession(row) : undefined;
  }

  /** Any owner's session: for internal bookkeeping (sweeps, audit of denied access), never for a caller. */
  async getSessionById(id: string): Promise<SessionRecord | undefined> {
    const [row] = await this.db.query<Row>('SELECT * FROM sessions WHERE id = $1', [id]);
    return row ? toSession(row) : undefined;
  }

  async listSessions(ownerId: string, options: { includeEnded?: boolean } = {}): Promise<SessionRecord[]> {
    const rows = await this.db.query<Row>(
      `SELECT * FROM sessions WHERE owner_id = $1 ${options.includeEnded ? '' : `AND state IN ${LIVE_SQL}`}
       ORDER BY created_at DESC, id LIMIT 500`,
      [ownerId],
    );
    return rows.map(toSession);
  }

  /** Live sessions of every owner (for idle and TTL sweeps). */
  async listLiveSessions(): Promise<SessionRecord[]> {
    return (await this.db.query<Row>(`SELECT * FROM sessions WHERE state IN ${LIVE_SQL}`)).map(toSession);
  }

  /** Sandbox ids of `failed` sessions of `instanceId` (kept until the session is destroyed: not orphans). */
  async listFailedSandboxIds(instanceId: string): Promise<string[]> {
    const rows = await this.db.query<Row>(
      `SELECT sandbox_id FROM sessions WHERE state = 'failed' AND instance_id = $1 AND sandbox_id IS NOT NULL`,
      [instanceId],
    );
    return rows.map((r) => String(r.sandbox_id));
  }

  /**
   * Moves a session to `to` only if it is currently in one of `from` (compare-and-set, so two racing
   * transitions cannot both win). Returns the updated record, or undefined when the state did not match.
   */
  async transitionSession(
    id: string,
    from: readonly SessionState[],
    to: SessionState,
    extra: { sandboxId?: string; failureReason?: string } = {},
  ): Promise<SessionRecord | undefined> {
    const [row] = await this.db.query<Row>(
      `UPDATE sessions SET
         state = $2,
         sandbox_id = coalesce($3, sandbox_id),
         failure_reason = CASE WHEN $2 = 'failed' THEN coalesce($4, 'unknown failure') ELSE NULL END,
         destroyed_at = CASE WHEN $2 = 'destroyed' THEN now() ELSE destroyed_at END,
         last_active_at = now()
       WHERE id = $1 AND state = ANY($5::text[]) RETURNING *`,
      [id, to, extra.sandboxId ?? null, extra.failureReason?.slice(0, 1000) ?? null, [...from]],
    );
    return row ? toSession(row) : undefined;
  }

  /**
   * Sets (a holder) or clears (null) who holds control of `ownerId`'s session `id`. Returns the updated
   * record, or undefined when `ownerId` has no such session.
   */
  async setSessionControl(
    ownerId: string,
    id: string,
    holder: { loginId: string; name: string } | null,
  ): Promise<SessionRecord | undefined> {
    const [row] = await this.db.query<Row>(
      `UPDATE sessions SET
         control_holder_login_id = $3::text,
         control_holder_name = $4::text,
         control_taken_at = CASE WHEN $3::text IS NULL THEN NULL ELSE now() END
       WHERE id = $1 AND owner_id = $2 RETURNING *`,
      [id, ownerId, holder?.loginId ?? null, holder?.name ?? null],
    );
    return row ? toSession(row) : undefined;
  }

  async touchSession(id: string): Promise<void> {
    await this.db.query('UPDATE sessions SET last_active_at = now() WHERE id = $1', [id]);
  }

  // ---------------------------------------------------------------------------------------------- audit

  async audit(event: AuditEvent): Promise<void> {
    await this.db.query(
      `INSERT INTO audit_events (actor_id, action, outcome, target, ip, request_id, details)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [
        event.actorId ?? null,
        event.action,
        event.outcome,
        event.target ?? null,
        event.ip ?? null,
        event.requestId ?? null,
        JSON.stringify(event.details ?? {}),
      ],
    );
  }

  async listAudit(options: { limit?: number; action?: string } = {}): Promise<AuditRecord[]> {
    const limit = Math.min(Math.max(options.limit ?? 100, 1), 1000);
    const rows = await this.db.query<Row>(
      `SELECT * FROM audit_events WHERE ($1::text IS NULL OR action = $1) ORDER BY id DESC LIMIT $2`,
      [options.action ?? null, limit],
    );
    return rows.map((r) => ({
      id: String(r.id),
      at: date(r.at),
      actorId: (r.actor_id as string | null) ?? null,
      action: String(r.action),
      outcome: r.outcome as AuditOutcome,
      target: (r.target as string | null) ?? null,
      ip: (r.ip as string | null) ?? null,
      requestId: (r.request_id as string | null) ?? null,
      details: json<Record<string, unknown>>(r.details),
    }));
  }
}

async function countLive(q: Queryable, ownerId: string): Promise<number> {
  const [row] = await q.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM sessions WHERE owner_id = $1 AND state IN ${LIVE_SQL}`,
    [ownerId],
  );
  return row?.n ?? 0;
}
