import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  check,
  foreignKey,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  timestamp,
  unique,
} from 'drizzle-orm/pg-core';

// The schema of the store, as code: `npm run db:generate -w @studio/db` writes the next migration into
// drizzle/ from the difference with the last one. Constraint and index names are the ones PostgreSQL gave the
// hand-written migrations (users_username_key, logins_user_id_fkey, sessions_check, …), so a database created
// by them and one created from this file are the same, and a later migration can name either's constraints.

export const ROLES = ['admin', 'user'] as const;
/**
 * `destroying` is recorded before a destroy touches the runtime, so a destroy a crash interrupted is finished on
 * restart (issue 17) instead of its sandbox reading as "removed outside Studio".
 */
export const SESSION_STATES = [
  'creating',
  'running',
  'stopped',
  'paused',
  'destroying',
  'destroyed',
  'failed',
] as const;
export const AUDIT_OUTCOMES = ['success', 'failure', 'denied'] as const;
/** Swarm's availability of a node (issue 23): only `active` nodes take new sessions. */
export const NODE_AVAILABILITIES = ['active', 'pause', 'drain'] as const;
/** A template's latest build: running, done (its image is usable), or failed (the reason in `failure`). */
export const TEMPLATE_STATES = ['building', 'ready', 'failed'] as const;

export type Role = (typeof ROLES)[number];
export type NodeAvailability = (typeof NODE_AVAILABILITIES)[number];

/** What a node service reports of itself with each heartbeat (issue 23); the API places sessions by it. */
export interface NodeCapacity {
  /** Backends this node can run (`docker`, `gvisor`). */
  backends: string[];
  /** Digests of the templates built on this node. */
  templates: string[];
  memoryTotalBytes: number;
  memoryFreeBytes: number;
  cpus: number;
  /** The 1-minute load average. */
  load1: number;
  /** At most this many live sessions; null: no limit of its own. */
  maxSessions: number | null;
}
export type SessionState = (typeof SESSION_STATES)[number];
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];
export type TemplateState = (typeof TEMPLATE_STATES)[number];

/**
 * States that count against the per-user limit: the session holds (or is getting) a sandbox and workspace. A
 * `paused` session (issue 20) holds its workspace and saved memory on disk, none of the host's memory.
 */
export const LIVE_STATES = [
  'creating',
  'running',
  'stopped',
  'paused',
  'destroying',
] as const satisfies readonly SessionState[];

/** The sandbox limits a session was created with (kept as JSON: the policy may add fields). */
export interface SessionResources {
  memoryBytes: number;
  cpus: number;
  pids: number;
  diskBytes: number;
  inodes: number;
  tmpBytes: number;
}

/**
 * A session's network settings (issue 18), as the policy package's `networkSettingsSchema` outputs them: the mode
 * and the canonical allowlist entries. Kept as JSON, like resources.
 */
export interface SessionNetwork {
  mode: 'none' | 'allowlist' | 'open';
  allow: string[];
}

const at = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

export const users = pgTable(
  'users',
  {
    id: text('id').primaryKey(),
    username: text('username').notNull(),
    passwordHash: text('password_hash').notNull(),
    role: text('role', { enum: ROLES }).notNull(),
    disabledAt: at('disabled_at'),
    createdAt: at('created_at').notNull().defaultNow(),
    /**
     * The password was given to this person by someone else (generated for the first admin, or an admin's
     * reset): their sign-ins may do nothing but change it until they have (issue 22).
     */
    mustChangePassword: boolean('must_change_password').notNull().default(false),
  },
  (t) => [
    unique('users_username_key').on(t.username),
    check('users_role_check', sql`${t.role} IN ('admin', 'user')`),
  ],
);

/** One row per sign-in: the JWT's sid. Logout and disabling a user revoke it server-side. */
export const logins = pgTable(
  'logins',
  {
    id: text('id').primaryKey(),
    userId: text('user_id').notNull(),
    createdAt: at('created_at').notNull().defaultNow(),
    expiresAt: at('expires_at').notNull(),
    revokedAt: at('revoked_at'),
  },
  (t) => [
    foreignKey({ name: 'logins_user_id_fkey', columns: [t.userId], foreignColumns: [users.id] }),
    index('logins_user').on(t.userId),
  ],
);

export const apiTokens = pgTable(
  'api_tokens',
  {
    id: text('id').primaryKey(),
    userId: text('user_id').notNull(),
    name: text('name').notNull(),
    tokenHash: text('token_hash').notNull(),
    createdAt: at('created_at').notNull().defaultNow(),
    expiresAt: at('expires_at'),
    lastUsedAt: at('last_used_at'),
    revokedAt: at('revoked_at'),
    /** Made for an AI agent: its events name the actor kind `agent`. */
    agent: boolean('agent').notNull().default(false),
  },
  (t) => [
    foreignKey({ name: 'api_tokens_user_id_fkey', columns: [t.userId], foreignColumns: [users.id] }),
    unique('api_tokens_token_hash_key').on(t.tokenHash),
    index('api_tokens_user').on(t.userId),
  ],
);

export const sessions = pgTable(
  'sessions',
  {
    id: text('id').primaryKey(),
    ownerId: text('owner_id').notNull(),
    backend: text('backend').notNull(),
    image: text('image').notNull(),
    resources: jsonb('resources').$type<SessionResources>().notNull(),
    network: jsonb('network').$type<SessionNetwork>().notNull().default({ mode: 'none', allow: [] }),
    /** Names of the owner's secrets the session is given (issue 18); the egress proxy reads their values. */
    secrets: jsonb('secrets').$type<string[]>().notNull().default([]),
    /** The template the session runs (issue 19); null: an operator image (`image`). */
    templateId: text('template_id'),
    instanceId: text('instance_id').notNull(),
    sandboxId: text('sandbox_id'),
    state: text('state', { enum: SESSION_STATES }).notNull(),
    failureReason: text('failure_reason'),
    createdAt: at('created_at').notNull().defaultNow(),
    lastActiveAt: at('last_active_at').notNull().defaultNow(),
    destroyedAt: at('destroyed_at'),
    // Who holds control (a login of the owner, a person); null = nobody. The name is kept for display.
    controlHolderLoginId: text('control_holder_login_id'),
    controlHolderName: text('control_holder_name'),
    controlTakenAt: at('control_taken_at'),
    /** The session this one was forked from (issue 20); null for a session made afresh or from a snapshot. */
    parentId: text('parent_id'),
    /** The snapshot this session was made from (issue 20). */
    fromSnapshotId: text('from_snapshot_id'),
    /** When the running session was last paused; null when it is not paused. */
    pausedAt: at('paused_at'),
    /** Time spent paused before `pausedAt`, which the session's time limit does not count. */
    pausedMs: bigint('paused_ms', { mode: 'number' }).notNull().default(0),
    /** Auto-pause leaves the session running while idle (a long job that needs no one). */
    keepAwake: boolean('keep_awake').notNull().default(false),
  },
  (t) => [
    foreignKey({ name: 'sessions_owner_id_fkey', columns: [t.ownerId], foreignColumns: [users.id] }),
    check(
      'sessions_state_check',
      sql`${t.state} IN ('creating', 'running', 'stopped', 'paused', 'destroying', 'destroyed', 'failed')`,
    ),
    check('sessions_check', sql`(${t.state} = 'failed') = (${t.failureReason} IS NOT NULL)`),
    index('sessions_owner_live')
      .on(t.ownerId)
      .where(sql`${t.state} IN ('creating', 'running', 'stopped', 'paused', 'destroying')`),
  ],
);

/**
 * A user's secrets (issue 18). The value is only ever stored sealed (`sealed`: AES-256-GCM under the operator's
 * key, bound to the owner and name), so a copy of the database alone holds no secret. Names are unique per owner:
 * sessions are given secrets by name.
 */
export const secrets = pgTable(
  'secrets',
  {
    id: text('id').primaryKey(),
    ownerId: text('owner_id').notNull(),
    name: text('name').notNull(),
    /** Canonical host entries the value may go to (names and wildcards, with optional ports). */
    hosts: jsonb('hosts').$type<string[]>().notNull(),
    /** The header template, `Authorization: Bearer {{value}}`. */
    header: text('header').notNull(),
    sealed: text('sealed').notNull(),
    createdAt: at('created_at').notNull().defaultNow(),
    updatedAt: at('updated_at').notNull().defaultNow(),
  },
  (t) => [
    foreignKey({ name: 'secrets_owner_id_fkey', columns: [t.ownerId], foreignColumns: [users.id] }),
    unique('secrets_owner_id_name_key').on(t.ownerId, t.name),
  ],
);

/**
 * Templates (issue 19): images users build from a recipe or a Dockerfile. `spec` is what the user gave (validated
 * by the policy package when created, parsed again at each build). `digest` names the last good build's root
 * filesystem (sha256 of its tar): sessions use that one, so a rebuild that fails leaves the template usable.
 * Names are unique per owner; shared templates (an admin's) are usable by everyone.
 */
export const templates = pgTable(
  'templates',
  {
    id: text('id').primaryKey(),
    ownerId: text('owner_id').notNull(),
    name: text('name').notNull(),
    description: text('description'),
    shared: boolean('shared').notNull().default(false),
    spec: jsonb('spec').$type<Record<string, unknown>>().notNull(),
    state: text('state', { enum: TEMPLATE_STATES }).notNull(),
    /** Content hash of the recipe with its base's digest: an unchanged template is not built again. */
    recipeHash: text('recipe_hash'),
    digest: text('digest'),
    sizeBytes: bigint('size_bytes', { mode: 'number' }),
    failure: text('failure'),
    /** The latest build's log, its last 64 KiB (a cluster's builder writes it as the build runs). */
    log: text('log').notNull().default(''),
    /**
     * The instance (a cluster's node) that runs or ran the latest build: only it may mark that build failed when
     * it finds none running, and a replica fails it when that node is lost. Null: built before scale-out.
     */
    builderId: text('builder_id'),
    createdAt: at('created_at').notNull().defaultNow(),
    updatedAt: at('updated_at').notNull().defaultNow(),
    builtAt: at('built_at'),
  },
  (t) => [
    foreignKey({ name: 'templates_owner_id_fkey', columns: [t.ownerId], foreignColumns: [users.id] }),
    unique('templates_owner_id_name_key').on(t.ownerId, t.name),
    check('templates_state_check', sql`${t.state} IN ('building', 'ready', 'failed')`),
  ],
);

/**
 * Snapshots of sessions (issue 20): a named copy of a session's workspace, and its memory where the backend can,
 * kept by the backend (`backend`, `snapshot id`) under the data directory and restorable into new sessions.
 * `bytes` counts against the owner's snapshot quota. Names are unique per owner. A fork's capture is a snapshot
 * too, removed once the forks exist (`name` null: never listed).
 */
export const snapshots = pgTable(
  'snapshots',
  {
    id: text('id').primaryKey(),
    ownerId: text('owner_id').notNull(),
    name: text('name'),
    /** The session it was taken of (which may since be destroyed). */
    sessionId: text('session_id').notNull(),
    backend: text('backend').notNull(),
    instanceId: text('instance_id').notNull(),
    image: text('image').notNull(),
    templateId: text('template_id'),
    resources: jsonb('resources').$type<SessionResources>().notNull(),
    network: jsonb('network').$type<SessionNetwork>().notNull().default({ mode: 'none', allow: [] }),
    secrets: jsonb('secrets').$type<string[]>().notNull().default([]),
    memory: boolean('memory').notNull(),
    bytes: bigint('bytes', { mode: 'number' }).notNull(),
    createdAt: at('created_at').notNull().defaultNow(),
  },
  (t) => [
    foreignKey({ name: 'snapshots_owner_id_fkey', columns: [t.ownerId], foreignColumns: [users.id] }),
    unique('snapshots_owner_id_name_key').on(t.ownerId, t.name),
    index('snapshots_owner').on(t.ownerId),
  ],
);

/**
 * What the E2B API (issue 21) keeps of a session it created or connected to: the metadata and env vars given at
 * create, the deadline (`endsAt`, E2B's timeout; null: Studio's own idle and TTL rules only) and what happens
 * then, and the access token envd calls must carry. `envsSealed` and `tokenSealed` are sealed with the secrets key
 * (env vars often hold credentials). `tokenId` is the API token the sandbox's envd calls act as.
 */
export const e2bSandboxes = pgTable(
  'e2b_sandboxes',
  {
    sessionId: text('session_id').primaryKey(),
    ownerId: text('owner_id').notNull(),
    tokenId: text('token_id'),
    metadata: jsonb('metadata').$type<Record<string, string>>().notNull().default({}),
    envsSealed: text('envs_sealed'),
    tokenSealed: text('token_sealed').notNull(),
    endsAt: at('ends_at'),
    onTimeout: text('on_timeout', { enum: ['kill', 'pause'] })
      .notNull()
      .default('kill'),
    publicTraffic: boolean('public_traffic').notNull().default(true),
    /**
     * `e2b`: made by E2B's create, and E2B's lifecycle holds (connect sets the deadline). `studio`: a session made
     * in Studio that E2B connected to: Studio's own rules govern it, and only an explicit setTimeout gives it a
     * deadline, which pauses it (a person's session is never destroyed by an E2B deadline).
     */
    origin: text('origin', { enum: ['e2b', 'studio'] })
      .notNull()
      .default('e2b'),
    createdAt: at('created_at').notNull().defaultNow(),
  },
  (t) => [
    foreignKey({
      name: 'e2b_sandboxes_session_id_fkey',
      columns: [t.sessionId],
      foreignColumns: [sessions.id],
    }),
    index('e2b_sandboxes_owner').on(t.ownerId),
    index('e2b_sandboxes_ends_at').on(t.endsAt),
  ],
);

/**
 * The owner of every sandbox an API instance makes, written before the backend creates anything of it (issue 17):
 * a session's sandbox (`sessionId`) or a warm-pool member (null). A crash at any point of a create or destroy then
 * leaves a record naming what may exist (container, runsc sandbox, workspace image, mount, loop device), and
 * reconciliation removes it through the backend's idempotent `destroy(id)` once no live session holds it. The row
 * goes only after that destroy succeeded.
 */
export const sandboxes = pgTable(
  'sandboxes',
  {
    id: text('id').primaryKey(),
    backend: text('backend').notNull(),
    instanceId: text('instance_id').notNull(),
    sessionId: text('session_id'),
    createdAt: at('created_at').notNull().defaultNow(),
  },
  (t) => [index('sandboxes_instance').on(t.instanceId)],
);

/**
 * What happened in a session (issue 22): the API's live events (`events.subscribe`), kept so that someone opening
 * the session later sees what was done before (`events.history`). `cursor` is the event's id on the API's event
 * bus, from which a client continues live; `id` orders the rows and pages back through them. Bounded per session
 * by the API (the newest few thousand), and gone with the session: on destroy, or with its row.
 */
export const sessionEvents = pgTable(
  'session_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    sessionId: text('session_id').notNull(),
    cursor: text('cursor').notNull(),
    at: at('at').notNull(),
    /** Who caused it (the API's actor: kind, user id, token id, name); null for the sandbox's own changes. */
    actor: jsonb('actor').$type<Record<string, unknown>>(),
    /** The event itself (`type` and its fields), without id, session, time and actor. */
    body: jsonb('body').$type<Record<string, unknown>>().notNull(),
  },
  (t) => [
    foreignKey({
      name: 'session_events_session_id_fkey',
      columns: [t.sessionId],
      foreignColumns: [sessions.id],
    }).onDelete('cascade'),
    index('session_events_session_id').on(t.sessionId, t.id),
  ],
);

/** One security-relevant event. Never holds secrets (passwords, tokens, cookies). */
export const auditEvents = pgTable(
  'audit_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    at: at('at').notNull().defaultNow(),
    actorId: text('actor_id'),
    action: text('action').notNull(),
    outcome: text('outcome', { enum: AUDIT_OUTCOMES }).notNull(),
    target: text('target'),
    ip: text('ip'),
    requestId: text('request_id'),
    details: jsonb('details').$type<Record<string, unknown>>().notNull().default({}),
  },
  (t) => [
    check('audit_events_outcome_check', sql`${t.outcome} IN ('success', 'failure', 'denied')`),
    index('audit_events_at').on(t.at),
  ],
);

/**
 * Which process holds each API instance id: one row per claimed id, renewed by heartbeat. A row whose
 * heartbeat is older than the claimant's lease may be taken over (the holder died without releasing).
 */
export const instances = pgTable('instances', {
  id: text('id').primaryKey(),
  /** A token unique to the claiming process (never reused across starts). */
  holder: text('holder').notNull(),
  host: text('host').notNull(),
  pid: integer('pid').notNull(),
  dataDir: text('data_dir').notNull(),
  heartbeatAt: at('heartbeat_at').notNull(),
});

/**
 * The node services of a cluster (issue 23), one row per node service, keyed by its instance id (the
 * `instance_id` of the sessions it runs and the label of its sandboxes). Each renews `reported_at` with its
 * capacity every few seconds; API replicas read them to place sessions and to reach a session's node at `url`.
 * `availability` is Swarm's (kept in step by a node service on a manager); `draining` is set by a node service
 * that is shutting down. Single-box Studio has no rows.
 */
export const nodes = pgTable(
  'nodes',
  {
    id: text('id').primaryKey(),
    /** Where API replicas reach this node service (`http://10.0.1.7:4100`): inside the cluster only. */
    url: text('url').notNull(),
    /** Where API replicas reach its preview listener (previews and E2B hosts); null when it has none. */
    previewUrl: text('preview_url'),
    host: text('host').notNull(),
    /** Swarm's id of the node it runs on; null outside Swarm. */
    swarmNodeId: text('swarm_node_id'),
    availability: text('availability', { enum: NODE_AVAILABILITIES }).notNull().default('active'),
    draining: boolean('draining').notNull().default(false),
    capacity: jsonb('capacity').$type<NodeCapacity>().notNull(),
    startedAt: at('started_at').notNull().defaultNow(),
    reportedAt: at('reported_at').notNull().defaultNow(),
  },
  (t) => [
    check('nodes_availability_check', sql`${t.availability} IN ('active', 'pause', 'drain')`),
    index('nodes_swarm_node_id').on(t.swarmNodeId),
  ],
);
