import { and, desc, eq, inArray, isNotNull, isNull, lt, ne, or, sql } from 'drizzle-orm';
import type { Db } from './db.ts';
import { driverError, StoreError, sqlStateOf, toStoreError } from './errors.ts';
import {
  apiTokens,
  auditEvents,
  e2bSandboxes,
  instances,
  LIVE_STATES as LIVE,
  logins,
  type NodeAvailability,
  type NodeCapacity,
  nodes,
  type Role,
  type SessionNetwork,
  type SessionResources,
  type SessionState,
  sandboxes,
  secrets,
  sessionEvents,
  sessions,
  snapshots,
  type TemplateState,
  templates,
  users,
} from './schema.ts';

export type {
  AuditOutcome,
  NodeAvailability,
  NodeCapacity,
  Role,
  SessionNetwork,
  SessionResources,
  SessionState,
  TemplateState,
} from './schema.ts';

/** States that count against the per-user limit: the session holds (or is getting) a sandbox and workspace. */
export const LIVE_STATES: readonly SessionState[] = LIVE;

export type UserRecord = typeof users.$inferSelect;
export type LoginRecord = typeof logins.$inferSelect;
export type ApiTokenRecord = typeof apiTokens.$inferSelect;
/** A stored secret; `sealed` is the encrypted value (never returned by the API). */
export type SecretRecord = typeof secrets.$inferSelect;
/** A stored template (issue 19). */
export type TemplateRecord = typeof templates.$inferSelect;
/** A stored snapshot of a session (issue 20). */
export type SnapshotRecord = typeof snapshots.$inferSelect;
/** What the E2B API keeps of a session (issue 21). */
export type E2bSandboxRecord = typeof e2bSandboxes.$inferSelect;
/** Input of {@link Store.putE2bSandbox}. */
export type NewE2bSandbox = Omit<E2bSandboxRecord, 'createdAt'>;
/** Input of {@link Store.createSnapshot}. */
export type NewSnapshot = Omit<SnapshotRecord, 'createdAt' | 'network' | 'secrets'> &
  Partial<Pick<SnapshotRecord, 'network' | 'secrets'>>;

/** Input of {@link Store.createTemplate}. */
export interface NewTemplate {
  id: string;
  ownerId: string;
  name: string;
  description?: string | null;
  shared: boolean;
  spec: Record<string, unknown>;
  /** The instance that runs its first build (see {@link TemplateRecord.builderId}). */
  builderId?: string | null;
}

/** What a build changes on a template ({@link Store.updateTemplate}). */
export type TemplatePatch = Partial<
  Pick<
    TemplateRecord,
    | 'state'
    | 'recipeHash'
    | 'digest'
    | 'sizeBytes'
    | 'failure'
    | 'log'
    | 'builtAt'
    | 'spec'
    | 'description'
    | 'builderId'
  >
>;

/** Who holds control of a session: while set, API tokens may not change it (HUMAN_HAS_CONTROL). */
export interface SessionControl {
  loginId: string;
  name: string;
  since: Date;
}

type SessionRow = typeof sessions.$inferSelect;

/** A session; the three control columns are read as one `control` (null when nobody holds it). */
export type SessionRecord = Omit<
  SessionRow,
  'controlHolderLoginId' | 'controlHolderName' | 'controlTakenAt'
> & {
  /** The person (a login of the owner) holding control of the session, or null. */
  control: SessionControl | null;
};

/** One security-relevant event. Never holds secrets (passwords, tokens, cookies). */
export interface AuditEvent {
  action: string;
  outcome: AuditRecord['outcome'];
  actorId?: string | null | undefined;
  target?: string | null | undefined;
  ip?: string | null | undefined;
  requestId?: string | null | undefined;
  details?: Record<string, unknown> | undefined;
}

/** A stored audit event; `id` is the bigserial as a string (it outgrows JavaScript numbers in theory only). */
export type AuditRecord = Omit<typeof auditEvents.$inferSelect, 'id'> & { id: string };

/**
 * One stored event of a session (issue 22). `id` is the bigserial as a string: it orders a session's events and is
 * the `before` of the next older page. `cursor` is the event's id on the API's event bus.
 */
export interface SessionEventRecord {
  id: string;
  sessionId: string;
  cursor: string;
  at: Date;
  actor: Record<string, unknown> | null;
  body: Record<string, unknown>;
}

/** Input of {@link Store.appendSessionEvents}. */
export type NewSessionEvent = Omit<SessionEventRecord, 'id'>;

/** Input of {@link Store.reserveSession}. */
export interface NewSession {
  id: string;
  ownerId: string;
  backend: string;
  image: string;
  resources: SessionResources;
  /** Default: no network (`{ mode: 'none', allow: [] }`). */
  network?: SessionNetwork;
  /** Names of the owner's secrets the session is given; default none. */
  secrets?: string[];
  /** The template it runs; default none (an operator image). */
  templateId?: string | null;
  instanceId: string;
  /** The session it was forked from (issue 20). */
  parentId?: string | null;
  /** The snapshot it is made from (issue 20). */
  fromSnapshotId?: string | null;
  /** Auto-pause leaves it running while idle; default false. */
  keepAwake?: boolean;
}

/** An owner record of a sandbox ({@link Store.recordSandbox}). */
export interface SandboxOwner {
  id: string;
  backend: string;
  instanceId: string;
  /** The session it belongs to; null for a warm-pool member. */
  sessionId: string | null;
  createdAt: Date;
}

/** Input of {@link Store.claimInstance}. */
export interface InstanceClaim {
  /** The instance id (STUDIO_INSTANCE_ID): sandboxes are labelled with it. */
  id: string;
  /** A token unique to this process: renew and release only act for the same holder. */
  holder: string;
  host: string;
  pid: number;
  dataDir: string;
  /** How long a heartbeat holds the claim; an older one may be taken over. */
  leaseMs: number;
  /**
   * A holder known to be dead (a process of this host that no longer runs): its claim is taken over at once
   * instead of after its lease.
   */
  replace?: { host: string; pid: number } | undefined;
}

/** Who holds an instance id, as reported to a claimant that lost. */
export interface InstanceHolder {
  host: string;
  pid: number;
  dataDir: string;
  heartbeatAt: Date;
}

/** What a node service reports of itself ({@link Store.reportNode}), renewed with every heartbeat. */
export interface NodeReport {
  /** Its instance id. */
  id: string;
  url: string;
  /** Where replicas reach its preview listener; null when previews are off there. */
  previewUrl?: string | null;
  host: string;
  swarmNodeId: string | null;
  capacity: NodeCapacity;
}

/** A node service as API replicas see it ({@link Store.listNodes}). */
export interface NodeRecord extends NodeReport {
  availability: NodeAvailability;
  draining: boolean;
  startedAt: Date;
  reportedAt: Date;
  /** Milliseconds since its last report, by the database's clock (hosts' clocks may differ). */
  ageMs: number;
  /** Its live sessions now, counted from the sessions table (a report lags behind placements). */
  liveSessions: number;
}

export type ClaimResult = { ok: true } | { ok: false; holder: InstanceHolder };

// The record type differs from the row only here: the three control columns become one optional object.
function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

function toSession(row: SessionRow): SessionRecord {
  const { controlHolderLoginId: loginId, controlHolderName: name, controlTakenAt: since, ...rest } = row;
  return {
    ...rest,
    // setSessionControl writes the three together; the fallbacks only satisfy the column types.
    control: loginId === null ? null : { loginId, name: name ?? '', since: since ?? rest.lastActiveAt },
  };
}

const liveIn = inArray(sessions.state, LIVE_STATES as SessionState[]);

/** Runs one store operation; every failure leaves it as a {@link StoreError} (never Drizzle's wrapper). */
async function guard<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    throw toStoreError(error);
  }
}

/**
 * Every record of the API, over one PostgreSQL dialect (PGlite or a server). Methods that take an owner id
 * only ever see that owner's rows: ownership is part of the query, never a check after it. Every failure is a
 * {@link StoreError}.
 */
export class Store {
  readonly db: Db;

  private constructor(db: Db) {
    this.db = db;
  }

  /** Wraps an open database (its schema is brought up to date by `openDb`). */
  static async open(db: Db): Promise<Store> {
    return new Store(db);
  }

  ping(): Promise<void> {
    return guard(async () => {
      await this.db.orm.execute(sql`SELECT 1`);
    });
  }

  close(): Promise<void> {
    return this.db.close();
  }

  // ---------------------------------------------------------------------------------------------- users

  /**
   * Throws CONFLICT when the username is taken. `mustChangePassword` (default false) marks a password someone
   * else chose: the user's sign-ins may only change it.
   */
  createUser(user: {
    id: string;
    username: string;
    passwordHash: string;
    role: Role;
    mustChangePassword?: boolean;
  }): Promise<UserRecord> {
    return guard(async () => {
      try {
        const [row] = await this.db.orm.insert(users).values(user).returning();
        return row as UserRecord;
      } catch (error) {
        if (sqlStateOf(error) === '23505') {
          throw new StoreError('CONFLICT', `username ${user.username} is taken; choose another`, {
            cause: driverError(error),
          });
        }
        throw error;
      }
    });
  }

  countUsers(): Promise<number> {
    return guard(() => this.db.orm.$count(users));
  }

  getUser(id: string): Promise<UserRecord | undefined> {
    return guard(async () => (await this.db.orm.select().from(users).where(eq(users.id, id)))[0]);
  }

  getUserByUsername(username: string): Promise<UserRecord | undefined> {
    return guard(async () => (await this.db.orm.select().from(users).where(eq(users.username, username)))[0]);
  }

  listUsers(): Promise<UserRecord[]> {
    return guard(() => this.db.orm.select().from(users).orderBy(users.createdAt, users.username));
  }

  /** Disables a user and, in the same transaction, revokes every login and API token it holds. */
  disableUser(id: string): Promise<UserRecord | undefined> {
    return guard(() =>
      this.db.orm.transaction(async (tx) => {
        const [row] = await tx
          .update(users)
          .set({ disabledAt: sql`coalesce(${users.disabledAt}, now())` })
          .where(eq(users.id, id))
          .returning();
        if (!row) return undefined;
        await tx
          .update(logins)
          .set({ revokedAt: sql`now()` })
          .where(and(eq(logins.userId, id), isNull(logins.revokedAt)));
        await tx
          .update(apiTokens)
          .set({ revokedAt: sql`now()` })
          .where(and(eq(apiTokens.userId, id), isNull(apiTokens.revokedAt)));
        return row;
      }),
    );
  }

  /** Enables a disabled user. Its sign-ins and API tokens revoked by {@link disableUser} stay revoked. */
  enableUser(id: string): Promise<UserRecord | undefined> {
    return guard(async () => {
      const [row] = await this.db.orm
        .update(users)
        .set({ disabledAt: null })
        .where(eq(users.id, id))
        .returning();
      return row;
    });
  }

  setUserRole(id: string, role: Role): Promise<UserRecord | undefined> {
    return guard(async () => {
      const [row] = await this.db.orm.update(users).set({ role }).where(eq(users.id, id)).returning();
      return row;
    });
  }

  /**
   * Replaces a user's password hash and sets `mustChangePassword`, and in the same transaction revokes every
   * sign-in of the user except `keepLoginId` (the one that changed it, if any): a password known to someone
   * else no longer holds anywhere. API tokens are left alone (they are not passwords; revoke them by name).
   */
  setPassword(
    id: string,
    change: { passwordHash: string; mustChangePassword: boolean; keepLoginId?: string },
  ): Promise<UserRecord | undefined> {
    return guard(() =>
      this.db.orm.transaction(async (tx) => {
        const [row] = await tx
          .update(users)
          .set({ passwordHash: change.passwordHash, mustChangePassword: change.mustChangePassword })
          .where(eq(users.id, id))
          .returning();
        if (!row) return undefined;
        await tx
          .update(logins)
          .set({ revokedAt: sql`now()` })
          .where(
            and(
              eq(logins.userId, id),
              isNull(logins.revokedAt),
              ...(change.keepLoginId === undefined ? [] : [ne(logins.id, change.keepLoginId)]),
            ),
          );
        return row;
      }),
    );
  }

  // --------------------------------------------------------------------------------------------- logins

  createLogin(login: { id: string; userId: string; expiresAt: Date }): Promise<void> {
    return guard(async () => {
      await this.db.orm.insert(logins).values(login);
    });
  }

  getLogin(id: string): Promise<LoginRecord | undefined> {
    return guard(async () => (await this.db.orm.select().from(logins).where(eq(logins.id, id)))[0]);
  }

  /** A login with its user, in one query (every request authenticated by JWT runs this). */
  getLoginWithUser(id: string): Promise<{ login: LoginRecord; user: UserRecord } | undefined> {
    return guard(
      async () =>
        (
          await this.db.orm
            .select({ login: logins, user: users })
            .from(logins)
            .innerJoin(users, eq(users.id, logins.userId))
            .where(eq(logins.id, id))
        )[0],
    );
  }

  /** An API token with its user, in one query. */
  findApiTokenWithUser(tokenHash: string): Promise<{ token: ApiTokenRecord; user: UserRecord } | undefined> {
    return guard(
      async () =>
        (
          await this.db.orm
            .select({ token: apiTokens, user: users })
            .from(apiTokens)
            .innerJoin(users, eq(users.id, apiTokens.userId))
            .where(eq(apiTokens.tokenHash, tokenHash))
        )[0],
    );
  }

  revokeLogin(id: string): Promise<void> {
    return guard(async () => {
      await this.db.orm
        .update(logins)
        .set({ revokedAt: sql`now()` })
        .where(and(eq(logins.id, id), isNull(logins.revokedAt)));
    });
  }

  // ----------------------------------------------------------------------------------------- api tokens

  createApiToken(token: {
    id: string;
    userId: string;
    name: string;
    tokenHash: string;
    expiresAt: Date | null;
    agent?: boolean;
  }): Promise<ApiTokenRecord> {
    return guard(async () => {
      const [row] = await this.db.orm
        .insert(apiTokens)
        .values({ ...token, agent: token.agent === true })
        .returning();
      return row as ApiTokenRecord;
    });
  }

  findApiTokenByHash(tokenHash: string): Promise<ApiTokenRecord | undefined> {
    return guard(
      async () => (await this.db.orm.select().from(apiTokens).where(eq(apiTokens.tokenHash, tokenHash)))[0],
    );
  }

  listApiTokens(userId: string): Promise<ApiTokenRecord[]> {
    return guard(() =>
      this.db.orm
        .select()
        .from(apiTokens)
        .where(eq(apiTokens.userId, userId))
        .orderBy(apiTokens.createdAt, apiTokens.id),
    );
  }

  /** Revokes one of `userId`'s tokens; false when it has no such token (or it was already revoked). */
  revokeApiToken(userId: string, id: string): Promise<boolean> {
    return guard(async () => {
      const rows = await this.db.orm
        .update(apiTokens)
        .set({ revokedAt: sql`now()` })
        .where(and(eq(apiTokens.id, id), eq(apiTokens.userId, userId), isNull(apiTokens.revokedAt)))
        .returning({ id: apiTokens.id });
      return rows.length > 0;
    });
  }

  touchApiToken(id: string): Promise<void> {
    return guard(async () => {
      await this.db.orm.update(apiTokens).set({ lastUsedAt: sql`now()` }).where(eq(apiTokens.id, id));
    });
  }

  // -------------------------------------------------------------------------------------------- secrets

  /**
   * Stores a new secret of `ownerId` if it holds fewer than `max`. Throws CONFLICT when the owner already has a
   * secret of that name (rotate it instead) and INVALID_INPUT at the limit.
   */
  createSecret(
    secret: { id: string; ownerId: string; name: string; hosts: string[]; header: string; sealed: string },
    max: number,
  ): Promise<SecretRecord> {
    return guard(() =>
      this.db.orm.transaction(async (tx) => {
        // The owner's row is locked so that concurrent creates count one after another (as reserveSession).
        await tx.select({ id: users.id }).from(users).where(eq(users.id, secret.ownerId)).for('update');
        const held = await tx.$count(secrets, eq(secrets.ownerId, secret.ownerId));
        if (held >= max) {
          throw new StoreError(
            'INVALID_INPUT',
            `you already have ${held} secrets (the limit is ${max}); delete one with secrets.delete first`,
          );
        }
        try {
          const [row] = await tx.insert(secrets).values(secret).returning();
          return row as SecretRecord;
        } catch (error) {
          if (sqlStateOf(error) === '23505') {
            throw new StoreError(
              'CONFLICT',
              `you already have a secret named ${secret.name}; rotate it with secrets.rotate, or delete it first`,
              { cause: driverError(error) },
            );
          }
          throw error;
        }
      }),
    );
  }

  /** `ownerId`'s secrets by name (all of them when `names` is not given), sorted by name. */
  listSecrets(ownerId: string, names?: readonly string[]): Promise<SecretRecord[]> {
    return guard(async () => {
      if (names !== undefined && names.length === 0) return [];
      return this.db.orm
        .select()
        .from(secrets)
        .where(
          names === undefined
            ? eq(secrets.ownerId, ownerId)
            : and(eq(secrets.ownerId, ownerId), inArray(secrets.name, [...names])),
        )
        .orderBy(secrets.name);
    });
  }

  /** Replaces the sealed value of `ownerId`'s secret `name`; the record, or undefined when there is none. */
  rotateSecret(ownerId: string, name: string, sealed: string): Promise<SecretRecord | undefined> {
    return guard(async () => {
      const [row] = await this.db.orm
        .update(secrets)
        .set({ sealed, updatedAt: sql`now()` })
        .where(and(eq(secrets.ownerId, ownerId), eq(secrets.name, name)))
        .returning();
      return row;
    });
  }

  /** Deletes `ownerId`'s secret `name`; false when there is none. */
  deleteSecret(ownerId: string, name: string): Promise<boolean> {
    return guard(async () => {
      const rows = await this.db.orm
        .delete(secrets)
        .where(and(eq(secrets.ownerId, ownerId), eq(secrets.name, name)))
        .returning({ id: secrets.id });
      return rows.length > 0;
    });
  }

  // ------------------------------------------------------------------------------------------ templates

  /**
   * Stores a new template of `ownerId` (state `building`) if the owner holds fewer than `max`. CONFLICT when the
   * owner already has a template of that name, INVALID_INPUT at the limit.
   */
  createTemplate(template: NewTemplate, max: number): Promise<TemplateRecord> {
    return guard(() =>
      this.db.orm.transaction(async (tx) => {
        await tx.select({ id: users.id }).from(users).where(eq(users.id, template.ownerId)).for('update');
        const held = await tx.$count(templates, eq(templates.ownerId, template.ownerId));
        if (held >= max) {
          throw new StoreError(
            'INVALID_INPUT',
            `you already have ${held} templates (the limit is ${max}); delete one with templates.delete first`,
          );
        }
        try {
          const [row] = await tx
            .insert(templates)
            .values({ ...template, state: 'building' })
            .returning();
          return row as TemplateRecord;
        } catch (error) {
          if (sqlStateOf(error) === '23505') {
            throw new StoreError(
              'CONFLICT',
              `you already have a template named ${template.name}; rebuild it with templates.build, or delete it first`,
              { cause: driverError(error) },
            );
          }
          throw error;
        }
      }),
    );
  }

  /** The templates `userId` may use: their own and every shared one, by name (own first on a tie). */
  listTemplates(userId: string): Promise<TemplateRecord[]> {
    return guard(async () => {
      const rows = await this.db.orm
        .select()
        .from(templates)
        .where(or(eq(templates.ownerId, userId), eq(templates.shared, true)))
        .orderBy(templates.name, templates.createdAt);
      return rows.sort((a, b) =>
        a.name === b.name ? Number(b.ownerId === userId) - Number(a.ownerId === userId) : 0,
      );
    });
  }

  /** Every template (reconciliation: which built images are still named). */
  allTemplates(): Promise<TemplateRecord[]> {
    return guard(() => this.db.orm.select().from(templates));
  }

  /** A template by id, whoever owns it; undefined when there is none. */
  getTemplate(id: string): Promise<TemplateRecord | undefined> {
    return guard(async () => {
      const [row] = await this.db.orm.select().from(templates).where(eq(templates.id, id));
      return row;
    });
  }

  /** Applies a build's outcome (or a new spec) to template `id`; the updated record, undefined when it is gone. */
  updateTemplate(id: string, patch: TemplatePatch): Promise<TemplateRecord | undefined> {
    return guard(async () => {
      const [row] = await this.db.orm
        .update(templates)
        .set({ ...patch, updatedAt: sql`now()` })
        .where(eq(templates.id, id))
        .returning();
      return row;
    });
  }

  /**
   * Marks template `id` `building` by `builderId` unless a build already runs (`expected` lists the states it may
   * move from); the record, or undefined when it is not in one of them.
   */
  startTemplateBuild(
    id: string,
    expected: readonly TemplateState[],
    builderId: string | null = null,
  ): Promise<TemplateRecord | undefined> {
    return guard(async () => {
      const [row] = await this.db.orm
        .update(templates)
        .set({ state: 'building', failure: null, log: '', builderId, updatedAt: sql`now()` })
        .where(and(eq(templates.id, id), inArray(templates.state, [...expected])))
        .returning();
      return row;
    });
  }

  /**
   * Deletes template `id` unless a live session runs it: CONFLICT then, naming how many. True when it was
   * deleted, false when there was none.
   */
  deleteTemplate(id: string): Promise<boolean> {
    return guard(() =>
      this.db.orm.transaction(async (tx) => {
        const [row] = await tx
          .select({ id: templates.id })
          .from(templates)
          .where(eq(templates.id, id))
          .for('update');
        if (!row) return false;
        const using = await tx.$count(sessions, and(eq(sessions.templateId, id), liveIn));
        if (using > 0) {
          throw new StoreError(
            'CONFLICT',
            `the template is used by ${using} live session${using === 1 ? '' : 's'}; destroy ${using === 1 ? 'it' : 'them'} first (sessions.destroy)`,
          );
        }
        await tx.delete(templates).where(eq(templates.id, id));
        return true;
      }),
    );
  }

  /** Images live sessions run (so that no cleanup removes one under a session). */
  imagesInUse(): Promise<string[]> {
    return guard(async () => {
      const rows = await this.db.orm.selectDistinct({ image: sessions.image }).from(sessions).where(liveIn);
      return rows.map((r) => r.image);
    });
  }

  // ------------------------------------------------------------------------------------------- sessions

  /**
   * Records a new session in state `creating` if its owner holds fewer than `maxLive` live sessions.
   *
   * Atomic under concurrency: the owner's user row is locked (`SELECT … FOR UPDATE`) for the transaction, so
   * concurrent creates for one user run the count-and-insert one after another, on PostgreSQL (READ COMMITTED
   * re-reads after the lock) and on PGlite alike. Throws SESSION_LIMIT when the owner is at the limit and
   * OWNER_INACTIVE when the owner is disabled or gone.
   */
  reserveSession(session: NewSession, maxLive: number): Promise<SessionRecord> {
    return guard(() =>
      this.db.orm.transaction(async (tx) => {
        const owner = await tx
          .select({ id: users.id })
          .from(users)
          .where(and(eq(users.id, session.ownerId), isNull(users.disabledAt)))
          .for('update');
        if (owner.length === 0) throw new StoreError('OWNER_INACTIVE', 'your account is disabled or gone');
        const live = await tx.$count(sessions, and(eq(sessions.ownerId, session.ownerId), liveIn));
        if (live >= maxLive) {
          throw new StoreError(
            'SESSION_LIMIT',
            `you already have ${live} live sessions (the limit is ${maxLive}); destroy one with sessions.destroy first`,
          );
        }
        const [row] = await tx
          .insert(sessions)
          .values({ ...session, state: 'creating' })
          .returning();
        return toSession(row as SessionRow);
      }),
    );
  }

  /**
   * Replaces the network settings of `ownerId`'s live session `id`; the updated record, or undefined when there is
   * no such live session.
   */
  setSessionNetwork(
    ownerId: string,
    id: string,
    network: SessionNetwork,
  ): Promise<SessionRecord | undefined> {
    return guard(async () => {
      const [row] = await this.db.orm
        .update(sessions)
        .set({ network })
        .where(and(eq(sessions.id, id), eq(sessions.ownerId, ownerId), liveIn))
        .returning();
      return row && toSession(row);
    });
  }

  countLiveSessions(ownerId: string): Promise<number> {
    return guard(() => this.db.orm.$count(sessions, and(eq(sessions.ownerId, ownerId), liveIn)));
  }

  /** The session `id` if `ownerId` owns it; undefined otherwise (whether it exists or not). */
  getSession(ownerId: string, id: string): Promise<SessionRecord | undefined> {
    return guard(async () => {
      const [row] = await this.db.orm
        .select()
        .from(sessions)
        .where(and(eq(sessions.id, id), eq(sessions.ownerId, ownerId)));
      return row && toSession(row);
    });
  }

  /** Any owner's session: for internal bookkeeping (sweeps, audit of denied access), never for a caller. */
  getSessionById(id: string): Promise<SessionRecord | undefined> {
    return guard(async () => {
      const [row] = await this.db.orm.select().from(sessions).where(eq(sessions.id, id));
      return row && toSession(row);
    });
  }

  listSessions(ownerId: string, options: { includeEnded?: boolean } = {}): Promise<SessionRecord[]> {
    return guard(async () => {
      const rows = await this.db.orm
        .select()
        .from(sessions)
        .where(and(eq(sessions.ownerId, ownerId), options.includeEnded ? undefined : liveIn))
        .orderBy(desc(sessions.createdAt), sessions.id)
        .limit(500);
      return rows.map(toSession);
    });
  }

  /** Live sessions of every owner (for idle and TTL sweeps). */
  listLiveSessions(): Promise<SessionRecord[]> {
    return guard(async () => (await this.db.orm.select().from(sessions).where(liveIn)).map(toSession));
  }

  /** Sandbox ids of `failed` sessions of `instanceId` (kept until the session is destroyed: not orphans). */
  listFailedSandboxIds(instanceId: string): Promise<string[]> {
    return guard(async () => {
      const rows = await this.db.orm
        .select({ sandboxId: sessions.sandboxId })
        .from(sessions)
        .where(
          and(
            eq(sessions.state, 'failed'),
            eq(sessions.instanceId, instanceId),
            isNotNull(sessions.sandboxId),
          ),
        );
      return rows.flatMap((r) => (r.sandboxId === null ? [] : [r.sandboxId]));
    });
  }

  /**
   * Moves a session to `to` only if it is currently in one of `from` (compare-and-set, so two racing
   * transitions cannot both win). Returns the updated record, or undefined when the state did not match.
   */
  transitionSession(
    id: string,
    from: readonly SessionState[],
    to: SessionState,
    extra: { sandboxId?: string; failureReason?: string } = {},
  ): Promise<SessionRecord | undefined> {
    return guard(async () => {
      const [row] = await this.db.orm
        .update(sessions)
        .set({
          state: to,
          // undefined leaves a column as it is
          sandboxId: extra.sandboxId,
          failureReason: to === 'failed' ? (extra.failureReason?.slice(0, 1000) ?? 'unknown failure') : null,
          destroyedAt: to === 'destroyed' ? sql`now()` : undefined,
          lastActiveAt: sql`now()`,
          // Time spent paused is kept apart: the session's time limit counts only the rest (issue 20).
          pausedAt: to === 'paused' ? sql`now()` : null,
          pausedMs:
            to === 'paused'
              ? undefined
              : sql`${sessions.pausedMs} + coalesce((extract(epoch from (now() - ${sessions.pausedAt})) * 1000)::bigint, 0)`,
        })
        .where(and(eq(sessions.id, id), inArray(sessions.state, [...from])))
        .returning();
      return row && toSession(row);
    });
  }

  /**
   * Sets (a holder) or clears (null) who holds control of `ownerId`'s session `id`. Returns the updated
   * record, or undefined when `ownerId` has no such session.
   */
  setSessionControl(
    ownerId: string,
    id: string,
    holder: { loginId: string; name: string } | null,
  ): Promise<SessionRecord | undefined> {
    return guard(async () => {
      const [row] = await this.db.orm
        .update(sessions)
        .set({
          controlHolderLoginId: holder?.loginId ?? null,
          controlHolderName: holder?.name ?? null,
          controlTakenAt: holder ? sql`now()` : null,
        })
        .where(and(eq(sessions.id, id), eq(sessions.ownerId, ownerId)))
        .returning();
      return row && toSession(row);
    });
  }

  /** Sets whether auto-pause leaves `ownerId`'s session `id` running while idle; undefined when there is none. */
  setSessionKeepAwake(ownerId: string, id: string, keepAwake: boolean): Promise<SessionRecord | undefined> {
    return guard(async () => {
      const [row] = await this.db.orm
        .update(sessions)
        .set({ keepAwake })
        .where(and(eq(sessions.id, id), eq(sessions.ownerId, ownerId)))
        .returning();
      return row && toSession(row);
    });
  }

  // ------------------------------------------------------------------------------------------ snapshots

  /**
   * Records a snapshot the backend made, if the owner's snapshots then take at most `maxBytes` in all. CONFLICT
   * when the owner has a snapshot of that name, INVALID_INPUT past the quota (the caller then deletes what the
   * backend made).
   */
  createSnapshot(snapshot: NewSnapshot, maxBytes: number): Promise<SnapshotRecord> {
    return guard(() =>
      this.db.orm.transaction(async (tx) => {
        await tx.select({ id: users.id }).from(users).where(eq(users.id, snapshot.ownerId)).for('update');
        const [used] = await tx
          .select({ bytes: sql<string>`coalesce(sum(${snapshots.bytes}), 0)` })
          .from(snapshots)
          .where(eq(snapshots.ownerId, snapshot.ownerId));
        const usedBytes = Number(used?.bytes ?? 0);
        if (usedBytes + snapshot.bytes > maxBytes) {
          throw new StoreError(
            'INVALID_INPUT',
            `this snapshot takes ${mib(snapshot.bytes)} and your snapshots already take ${mib(usedBytes)} of your ${mib(maxBytes)}: delete snapshots you no longer need with snapshots.delete`,
          );
        }
        try {
          const [row] = await tx.insert(snapshots).values(snapshot).returning();
          return row as SnapshotRecord;
        } catch (error) {
          if (sqlStateOf(error) === '23505') {
            throw new StoreError(
              'CONFLICT',
              `you already have a snapshot named ${snapshot.name}: choose another name, or delete that one first`,
              { cause: driverError(error) },
            );
          }
          throw error;
        }
      }),
    );
  }

  /** `ownerId`'s named snapshots, newest first. */
  listSnapshots(ownerId: string): Promise<SnapshotRecord[]> {
    return guard(() =>
      this.db.orm
        .select()
        .from(snapshots)
        .where(and(eq(snapshots.ownerId, ownerId), isNotNull(snapshots.name)))
        .orderBy(desc(snapshots.createdAt))
        .limit(500),
    );
  }

  /** Every snapshot of `instanceId` (named or a fork's capture), for reconciliation with the backends. */
  allSnapshots(instanceId: string): Promise<SnapshotRecord[]> {
    return guard(() => this.db.orm.select().from(snapshots).where(eq(snapshots.instanceId, instanceId)));
  }

  /** `ownerId`'s snapshot by id or name; undefined when there is none. */
  getSnapshot(ownerId: string, ref: string): Promise<SnapshotRecord | undefined> {
    return guard(async () => {
      const [row] = await this.db.orm
        .select()
        .from(snapshots)
        .where(and(eq(snapshots.ownerId, ownerId), or(eq(snapshots.id, ref), eq(snapshots.name, ref))))
        .limit(1);
      return row;
    });
  }

  /** Forgets snapshot `id` (the caller removed it from its backend first). True when there was one. */
  deleteSnapshot(id: string): Promise<boolean> {
    return guard(async () => {
      const rows = await this.db.orm
        .delete(snapshots)
        .where(eq(snapshots.id, id))
        .returning({ id: snapshots.id });
      return rows.length > 0;
    });
  }

  // -------------------------------------------------------------------------------------------- e2b

  /** Records (or replaces) what the E2B API keeps of a session. */
  putE2bSandbox(row: NewE2bSandbox): Promise<E2bSandboxRecord> {
    return guard(async () => {
      const { sessionId: _, ...rest } = row;
      const [saved] = await this.db.orm
        .insert(e2bSandboxes)
        .values(row)
        .onConflictDoUpdate({ target: e2bSandboxes.sessionId, set: rest })
        .returning();
      return saved as E2bSandboxRecord;
    });
  }

  /** The E2B record of `sessionId`; undefined when the E2B API never created or connected to it. */
  getE2bSandbox(sessionId: string): Promise<E2bSandboxRecord | undefined> {
    return guard(async () => {
      const [row] = await this.db.orm
        .select()
        .from(e2bSandboxes)
        .where(eq(e2bSandboxes.sessionId, sessionId))
        .limit(1);
      return row;
    });
  }

  /** The E2B records of `ownerId`'s sessions. */
  listE2bSandboxes(ownerId: string): Promise<E2bSandboxRecord[]> {
    return guard(() => this.db.orm.select().from(e2bSandboxes).where(eq(e2bSandboxes.ownerId, ownerId)));
  }

  /** Every E2B record (at most `limit`), for finding the sandbox a signed file URL was made for. */
  allE2bSandboxes(limit = 10_000): Promise<E2bSandboxRecord[]> {
    return guard(() => this.db.orm.select().from(e2bSandboxes).limit(limit));
  }

  /** Sets (or clears) a session's E2B deadline. False when it has no E2B record. */
  setE2bDeadline(sessionId: string, endsAt: Date | null): Promise<boolean> {
    return guard(async () => {
      const rows = await this.db.orm
        .update(e2bSandboxes)
        .set({ endsAt })
        .where(eq(e2bSandboxes.sessionId, sessionId))
        .returning({ id: e2bSandboxes.sessionId });
      return rows.length > 0;
    });
  }

  /** E2B records whose deadline is before `before`, soonest first (at most `limit`). */
  dueE2bSandboxes(before: Date, limit = 100, instanceId?: string): Promise<E2bSandboxRecord[]> {
    // In a cluster each node keeps the deadlines of the sandboxes it runs (issue 23), never another node's.
    const own =
      instanceId === undefined
        ? undefined
        : inArray(
            e2bSandboxes.sessionId,
            this.db.orm.select({ id: sessions.id }).from(sessions).where(eq(sessions.instanceId, instanceId)),
          );
    return guard(() =>
      this.db.orm
        .select()
        .from(e2bSandboxes)
        .where(and(lt(e2bSandboxes.endsAt, before), own))
        .orderBy(e2bSandboxes.endsAt)
        .limit(limit),
    );
  }

  /** Forgets the E2B records of sessions that ended (destroyed or failed) by any means; returns how many. */
  deleteEndedE2bSandboxes(): Promise<number> {
    return guard(async () => {
      const ended = this.db.orm
        .select({ id: sessions.id })
        .from(sessions)
        .where(inArray(sessions.state, ['destroyed', 'failed']));
      const rows = await this.db.orm
        .delete(e2bSandboxes)
        .where(inArray(e2bSandboxes.sessionId, ended))
        .returning({ id: e2bSandboxes.sessionId });
      return rows.length;
    });
  }

  /** Forgets a session's E2B record (the session was destroyed). */
  deleteE2bSandbox(sessionId: string): Promise<void> {
    return guard(async () => {
      await this.db.orm.delete(e2bSandboxes).where(eq(e2bSandboxes.sessionId, sessionId));
    });
  }

  touchSession(id: string): Promise<void> {
    return guard(async () => {
      await this.db.orm.update(sessions).set({ lastActiveAt: sql`now()` }).where(eq(sessions.id, id));
    });
  }

  // ------------------------------------------------------------------------------------ sandbox owners

  /**
   * Records the owner of a sandbox before its backend creates anything of it (a warm-pool member: `sessionId`
   * null). Idempotent for the same id.
   */
  recordSandbox(owner: Omit<SandboxOwner, 'createdAt'>): Promise<void> {
    return guard(async () => {
      await this.db.orm.insert(sandboxes).values(owner).onConflictDoNothing();
    });
  }

  /**
   * Makes `sandboxId` the sandbox of session `sessionId` and records (or moves, for a warm-pool member) its owner,
   * in one transaction, before the backend creates anything of it, if the session is still `creating`. Returns
   * the session, or undefined when it no longer is (destroyed meanwhile): then nothing is written.
   */
  assignSandbox(sandboxId: string, sessionId: string): Promise<SessionRecord | undefined> {
    return guard(() =>
      this.db.orm.transaction(async (tx) => {
        const [row] = await tx
          .update(sessions)
          .set({ sandboxId })
          .where(and(eq(sessions.id, sessionId), eq(sessions.state, 'creating')))
          .returning();
        if (!row) return undefined;
        await tx
          .insert(sandboxes)
          .values({ id: sandboxId, backend: row.backend, instanceId: row.instanceId, sessionId })
          .onConflictDoUpdate({ target: sandboxes.id, set: { sessionId } });
        return toSession(row);
      }),
    );
  }

  /** Forgets a sandbox's owner record: only after its backend's `destroy(id)` succeeded. */
  forgetSandbox(id: string): Promise<void> {
    return guard(async () => {
      await this.db.orm.delete(sandboxes).where(eq(sandboxes.id, id));
    });
  }

  /** The owner records of `instanceId`'s sandboxes, oldest first. */
  listSandboxOwners(instanceId: string): Promise<SandboxOwner[]> {
    return guard(async () =>
      this.db.orm
        .select()
        .from(sandboxes)
        .where(eq(sandboxes.instanceId, instanceId))
        .orderBy(sandboxes.createdAt, sandboxes.id),
    );
  }

  // ------------------------------------------------------------------------------------- session events

  /**
   * Appends events (in order) and then keeps only the newest `keep` of each session they belong to. Events of a
   * session the store does not have are dropped, not refused, so that one stray event cannot fail its batch.
   * Returns how many were stored.
   */
  appendSessionEvents(events: readonly NewSessionEvent[], keep: number): Promise<number> {
    if (!Number.isInteger(keep) || keep < 1) {
      return Promise.reject(new StoreError('INVALID_INPUT', `keep must be a positive integer, not ${keep}`));
    }
    if (events.length === 0) return Promise.resolve(0);
    return guard(async () => {
      // One parameter for the whole batch; WITH ORDINALITY keeps the ids in the order the events happened.
      const batch = JSON.stringify(
        events.map((e) => ({
          session_id: e.sessionId,
          cursor: e.cursor,
          at: e.at.toISOString(),
          actor: e.actor,
          body: e.body,
        })),
      );
      const inserted = await this.db.orm.execute(sql`
        INSERT INTO ${sessionEvents} (session_id, cursor, at, actor, body)
        SELECT e.v->>'session_id', e.v->>'cursor', (e.v->>'at')::timestamptz,
               nullif(e.v->'actor', 'null'::jsonb), e.v->'body'
          FROM jsonb_array_elements(${batch}::jsonb) WITH ORDINALITY AS e(v, n)
         WHERE EXISTS (SELECT 1 FROM ${sessions} s WHERE s.id = e.v->>'session_id')
         ORDER BY e.n
        RETURNING session_id`);
      // Both drivers answer raw statements with `{ rows }`.
      const { rows } = inserted as unknown as { rows: { session_id: string }[] };
      for (const sessionId of new Set(rows.map((r) => r.session_id))) {
        await this.db.orm.execute(sql`
          DELETE FROM ${sessionEvents}
           WHERE session_id = ${sessionId}
             AND id <= (SELECT id FROM ${sessionEvents} WHERE session_id = ${sessionId}
                         ORDER BY id DESC OFFSET ${keep} LIMIT 1)`);
      }
      return rows.length;
    });
  }

  /**
   * A page of the events of `ownerId`'s session `sessionId`, newest first: the `limit` (1..1000) before the stored
   * id `before`, or the newest. Empty when `ownerId` has no such session.
   */
  listSessionEvents(
    ownerId: string,
    sessionId: string,
    options: { before?: string | undefined; limit?: number } = {},
  ): Promise<SessionEventRecord[]> {
    const limit = Math.min(Math.max(options.limit ?? 100, 1), 1000);
    const before = options.before === undefined ? undefined : Number(options.before);
    if (before !== undefined && !Number.isSafeInteger(before)) {
      return Promise.reject(
        new StoreError('INVALID_INPUT', `before must be the id of a stored event, not ${options.before}`),
      );
    }
    return guard(async () => {
      const rows = await this.db.orm
        .select({
          id: sessionEvents.id,
          sessionId: sessionEvents.sessionId,
          cursor: sessionEvents.cursor,
          at: sessionEvents.at,
          actor: sessionEvents.actor,
          body: sessionEvents.body,
        })
        .from(sessionEvents)
        .innerJoin(sessions, eq(sessions.id, sessionEvents.sessionId))
        .where(
          and(
            eq(sessionEvents.sessionId, sessionId),
            eq(sessions.ownerId, ownerId),
            before === undefined ? undefined : lt(sessionEvents.id, before),
          ),
        )
        .orderBy(desc(sessionEvents.id))
        .limit(limit);
      return rows.map((r) => ({ ...r, id: String(r.id), actor: r.actor ?? null }));
    });
  }

  /** Forgets a session's events (it was destroyed); returns how many. */
  deleteSessionEvents(sessionId: string): Promise<number> {
    return guard(async () => {
      const rows = await this.db.orm
        .delete(sessionEvents)
        .where(eq(sessionEvents.sessionId, sessionId))
        .returning({ id: sessionEvents.id });
      return rows.length;
    });
  }

  /** Forgets the events of every destroyed session, however it was destroyed; returns how many. */
  deleteEndedSessionEvents(): Promise<number> {
    return guard(async () => {
      const ended = this.db.orm
        .select({ id: sessions.id })
        .from(sessions)
        .where(eq(sessions.state, 'destroyed'));
      const rows = await this.db.orm
        .delete(sessionEvents)
        .where(inArray(sessionEvents.sessionId, ended))
        .returning({ id: sessionEvents.id });
      return rows.length;
    });
  }

  // ---------------------------------------------------------------------------------------------- audit

  audit(event: AuditEvent): Promise<void> {
    return guard(async () => {
      await this.db.orm.insert(auditEvents).values({
        actorId: event.actorId ?? null,
        action: event.action,
        outcome: event.outcome,
        target: event.target ?? null,
        ip: event.ip ?? null,
        requestId: event.requestId ?? null,
        details: event.details ?? {},
      });
    });
  }

  listAudit(options: { limit?: number; action?: string } = {}): Promise<AuditRecord[]> {
    const limit = Math.min(Math.max(options.limit ?? 100, 1), 1000);
    return guard(async () => {
      const rows = await this.db.orm
        .select()
        .from(auditEvents)
        .where(options.action === undefined ? undefined : eq(auditEvents.action, options.action))
        .orderBy(desc(auditEvents.id))
        .limit(limit);
      return rows.map((r) => ({ ...r, id: String(r.id) }));
    });
  }

  // ------------------------------------------------------------------------------------------ instances

  /**
   * Claims instance id `claim.id` for `claim.holder`: wins when nobody holds it, when the holder is the same, or
   * when the last heartbeat is older than `leaseMs` (the holder died without releasing). One statement (INSERT …
   * ON CONFLICT DO UPDATE … WHERE), so of two concurrent claimants at most one wins; times are the database's
   * clock, so hosts with skewed clocks agree. A loser learns who holds the id.
   */
  claimInstance(claim: InstanceClaim): Promise<ClaimResult> {
    if (!Number.isFinite(claim.leaseMs) || claim.leaseMs <= 0) {
      return Promise.reject(
        new StoreError(
          'INVALID_INPUT',
          `leaseMs must be a positive number of milliseconds, not ${claim.leaseMs}`,
        ),
      );
    }
    return guard(async () => {
      const values = { holder: claim.holder, host: claim.host, pid: claim.pid, dataDir: claim.dataDir };
      // A holder that releases between the lost claim and the look-up leaves no row: claim again.
      for (let attempt = 0; attempt < 3; attempt++) {
        const won = await this.db.orm
          .insert(instances)
          .values({ id: claim.id, ...values, heartbeatAt: sql`now()` })
          .onConflictDoUpdate({
            target: instances.id,
            set: { ...values, heartbeatAt: sql`now()` },
            setWhere: or(
              eq(instances.holder, claim.holder),
              lt(instances.heartbeatAt, sql`now() - make_interval(secs => ${claim.leaseMs / 1000})`),
              claim.replace
                ? and(eq(instances.host, claim.replace.host), eq(instances.pid, claim.replace.pid))
                : undefined,
            ),
          })
          .returning({ id: instances.id });
        if (won.length > 0) return { ok: true };
        const [holder] = await this.db.orm
          .select({
            host: instances.host,
            pid: instances.pid,
            dataDir: instances.dataDir,
            heartbeatAt: instances.heartbeatAt,
          })
          .from(instances)
          .where(eq(instances.id, claim.id));
        if (holder) return { ok: false, holder };
      }
      throw new StoreError(
        'CONFLICT',
        `instance id ${claim.id} kept changing hands while it was claimed; retry`,
      );
    });
  }

  /** Renews `holder`'s heartbeat on instance `id`; false when someone else holds it now (or nobody does). */
  renewInstance(id: string, holder: string): Promise<boolean> {
    return guard(async () => {
      const rows = await this.db.orm
        .update(instances)
        .set({ heartbeatAt: sql`now()` })
        .where(and(eq(instances.id, id), eq(instances.holder, holder)))
        .returning({ id: instances.id });
      return rows.length > 0;
    });
  }

  /** Gives up instance `id` if `holder` holds it (another holder's claim is left alone). */
  releaseInstance(id: string, holder: string): Promise<void> {
    return guard(async () => {
      await this.db.orm.delete(instances).where(and(eq(instances.id, id), eq(instances.holder, holder)));
    });
  }

  // ------------------------------------------------------------------------------------------ nodes (issue 23)

  /**
   * Records a node service's heartbeat: its address and capacity, `reported_at` set to the database's now. A new
   * node starts `active` and not draining; a known one keeps its Swarm availability (set by
   * {@link setNodeAvailability}) and clears `draining` only when `restarted` (a fresh start of its service).
   */
  reportNode(report: NodeReport, options: { restarted?: boolean } = {}): Promise<void> {
    return guard(async () => {
      const values = {
        url: report.url,
        previewUrl: report.previewUrl ?? null,
        host: report.host,
        swarmNodeId: report.swarmNodeId,
        capacity: report.capacity,
        reportedAt: sql`now()`,
      };
      await this.db.orm
        .insert(nodes)
        .values({ id: report.id, ...values })
        .onConflictDoUpdate({
          target: nodes.id,
          set: options.restarted ? { ...values, draining: false, startedAt: sql`now()` } : values,
        });
    });
  }

  /** Every node service known, with its age and live sessions; oldest first. */
  listNodes(): Promise<NodeRecord[]> {
    return guard(async () => {
      const live = this.db.orm
        .select({ instanceId: sessions.instanceId, count: sql<number>`count(*)::int`.as('count') })
        .from(sessions)
        .where(liveIn)
        .groupBy(sessions.instanceId)
        .as('live');
      const rows = await this.db.orm
        .select({
          node: nodes,
          ageMs: sql<number>`(extract(epoch from (now() - ${nodes.reportedAt})) * 1000)::float8`,
          liveSessions: sql<number>`coalesce(${live.count}, 0)::int`,
        })
        .from(nodes)
        .leftJoin(live, eq(live.instanceId, nodes.id))
        .orderBy(nodes.startedAt, nodes.id);
      return rows.map((r) => ({ ...r.node, ageMs: Number(r.ageMs), liveSessions: Number(r.liveSessions) }));
    });
  }

  /** Sets Swarm's availability of the node service(s) on Swarm node `swarmNodeId`; how many rows changed. */
  setNodeAvailability(swarmNodeId: string, availability: NodeAvailability): Promise<number> {
    return guard(async () => {
      const rows = await this.db.orm
        .update(nodes)
        .set({ availability })
        .where(and(eq(nodes.swarmNodeId, swarmNodeId), ne(nodes.availability, availability)))
        .returning({ id: nodes.id });
      return rows.length;
    });
  }

  /** Marks node `id` as shutting down (or not): placement leaves a draining node out. */
  setNodeDraining(id: string, draining: boolean): Promise<void> {
    return guard(async () => {
      await this.db.orm.update(nodes).set({ draining }).where(eq(nodes.id, id));
    });
  }

  /** Forgets node `id` (an operator removed it from the cluster); its sessions' rows are left as they are. */
  removeNode(id: string): Promise<void> {
    return guard(async () => {
      await this.db.orm.delete(nodes).where(eq(nodes.id, id));
    });
  }

  /**
   * Fails the live sessions of every node not heard from for `staleMs` (its host died, or its service hung), or
   * for `drainedStaleMs` when Swarm drained it (its service was stopped on purpose: no need to wait as long): a
   * person sees `failed` and why instead of a session that looks running and answers nothing. One statement, so
   * any number of API replicas may run it at once. Returns what it failed.
   */
  /**
   * Fails the template builds running on a node not heard from for `staleMs`: the build died with it, and only its
   * builder may otherwise mark it failed (each node reconciles its own builds). Returns what it failed.
   */
  failBuildsOfLostNodes(staleMs: number): Promise<{ templateId: string; nodeId: string }[]> {
    if (!(Number.isFinite(staleMs) && staleMs > 0)) {
      return Promise.reject(
        new StoreError('INVALID_INPUT', `staleMs must be a positive duration, not ${staleMs}`),
      );
    }
    return guard(async () => {
      const rows = await this.db.orm
        .update(templates)
        .set({
          state: 'failed',
          failure: sql`'its build ran on node ' || ${nodes.id} || ', which stopped answering; run templates.build again'`,
          updatedAt: sql`now()`,
        })
        .from(nodes)
        .where(
          and(
            eq(templates.builderId, nodes.id),
            eq(templates.state, 'building'),
            lt(nodes.reportedAt, sql`now() - make_interval(secs => ${staleMs / 1000})`),
          ),
        )
        .returning({ templateId: templates.id, nodeId: nodes.id });
      return rows;
    });
  }

  failSessionsOfLostNodes(
    staleMs: number,
    drainedStaleMs = staleMs,
  ): Promise<{ sessionId: string; nodeId: string; reason: string }[]> {
    if (![staleMs, drainedStaleMs].every((ms) => Number.isFinite(ms) && ms > 0)) {
      return Promise.reject(
        new StoreError('INVALID_INPUT', `staleMs must be a positive duration, not ${staleMs}`),
      );
    }
    return guard(async () => {
      const seconds = Math.round(staleMs / 1000);
      const at = sql`to_char(now() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS')`;
      const reason = sql<string>`CASE WHEN ${nodes.availability} = 'drain' AND ${nodes.reportedAt} >= now() - make_interval(secs => ${staleMs / 1000})
        THEN 'its node ' || ${nodes.id} || ' was drained in Swarm and stopped answering (at ' || ${at} || ' UTC); destroy it, or restore it from a snapshot'
        ELSE 'its node ' || ${nodes.id} || ' stopped answering (no report for over ${sql.raw(String(seconds))} s at ' || ${at} || ' UTC); destroy it, or restore it from a snapshot' END`;
      const rows = await this.db.orm
        .update(sessions)
        .set({ state: 'failed', failureReason: reason })
        .from(nodes)
        .where(
          and(
            eq(sessions.instanceId, nodes.id),
            or(
              lt(nodes.reportedAt, sql`now() - make_interval(secs => ${staleMs / 1000})`),
              and(
                eq(nodes.availability, 'drain'),
                lt(nodes.reportedAt, sql`now() - make_interval(secs => ${drainedStaleMs / 1000})`),
              ),
            ),
            inArray(sessions.state, ['creating', 'running', 'stopped', 'paused']),
          ),
        )
        .returning({ sessionId: sessions.id, nodeId: nodes.id, reason: sessions.failureReason });
      return rows.map((r) => ({ sessionId: r.sessionId, nodeId: r.nodeId, reason: r.reason ?? '' }));
    });
  }
}
