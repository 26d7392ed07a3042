import type { Db } from './db.ts';

/** One schema change. Versions are dense and only ever appended; a released migration is never edited. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  /** Statements run in order inside the migration's transaction (one statement each: PGlite's rule). */
  readonly statements: readonly string[];
}

const LIVE = `('creating', 'running', 'stopped')`;

/** Every migration of the store, oldest first. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'users, logins, api tokens, sessions, audit events',
    statements: [
      `CREATE TABLE users (
        id text PRIMARY KEY,
        username text NOT NULL UNIQUE,
        password_hash text NOT NULL,
        role text NOT NULL CHECK (role IN ('admin', 'user')),
        disabled_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now()
      )`,
      // One row per sign-in: the JWT's sid. Logout and disabling a user revoke it server-side.
      `CREATE TABLE logins (
        id text PRIMARY KEY,
        user_id text NOT NULL REFERENCES users (id),
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        revoked_at timestamptz
      )`,
      `CREATE INDEX logins_user ON logins (user_id)`,
      `CREATE TABLE api_tokens (
        id text PRIMARY KEY,
        user_id text NOT NULL REFERENCES users (id),
        name text NOT NULL,
        token_hash text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz,
        last_used_at timestamptz,
        revoked_at timestamptz
      )`,
      `CREATE INDEX api_tokens_user ON api_tokens (user_id)`,
      `CREATE TABLE sessions (
        id text PRIMARY KEY,
        owner_id text NOT NULL REFERENCES users (id),
        backend text NOT NULL,
        image text NOT NULL,
        resources jsonb NOT NULL,
        instance_id text NOT NULL,
        sandbox_id text,
        state text NOT NULL CHECK (state IN ('creating', 'running', 'stopped', 'destroyed', 'failed')),
        failure_reason text,
        created_at timestamptz NOT NULL DEFAULT now(),
        last_active_at timestamptz NOT NULL DEFAULT now(),
        destroyed_at timestamptz,
        CHECK ((state = 'failed') = (failure_reason IS NOT NULL))
      )`,
      `CREATE INDEX sessions_owner_live ON sessions (owner_id) WHERE state IN ${LIVE}`,
      `CREATE TABLE audit_events (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        actor_id text,
        action text NOT NULL,
        outcome text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
        target text,
        ip text,
        request_id text,
        details jsonb NOT NULL DEFAULT '{}'
      )`,
      `CREATE INDEX audit_events_at ON audit_events (at)`,
    ],
  },
  {
    version: 2,
    name: 'session control: which login of the owner (a person) holds it, and since when',
    statements: [
      // Null = nobody holds control. The name is kept for display (`sessions.get`'s `control.heldBy`).
      `ALTER TABLE sessions ADD COLUMN control_holder_login_id text`,
      `ALTER TABLE sessions ADD COLUMN control_holder_name text`,
      `ALTER TABLE sessions ADD COLUMN control_taken_at timestamptz`,
    ],
  },
  {
    version: 3,
    name: 'api tokens: agent flag (events of such tokens name the actor kind agent)',
    statements: [`ALTER TABLE api_tokens ADD COLUMN agent boolean NOT NULL DEFAULT false`],
  },
];

// Any constant works; it only has to be the same in every API instance sharing a database.
const MIGRATION_LOCK = 0x5374_7564;

/**
 * Applies the migrations the database does not have yet, each in its own transaction, recording it in the
 * `migrations` table. Concurrent API instances on one PostgreSQL server are serialised by an advisory lock.
 * Returns the versions applied. A database newer than this code (an unknown version) is refused.
 */
export async function migrate(db: Db, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  await db.query(`CREATE TABLE IF NOT EXISTS migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
  const applied: number[] = [];
  for (const migration of migrations) {
    const done = await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const rows = await tx.query<{ version: number }>('SELECT version FROM migrations WHERE version = $1', [
        migration.version,
      ]);
      if (rows.length > 0) return false;
      for (const statement of migration.statements) await tx.query(statement);
      await tx.query('INSERT INTO migrations (version, name) VALUES ($1, $2)', [
        migration.version,
        migration.name,
      ]);
      return true;
    });
    if (done) applied.push(migration.version);
  }
  const latest = migrations.at(-1)?.version ?? 0;
  const [newest] = await db.query<{ v: number | null }>('SELECT max(version) AS v FROM migrations');
  if ((newest?.v ?? 0) > latest) {
    throw new Error(
      `the database has schema version ${newest?.v}, newer than this API (${latest}); run the newer API or restore a backup`,
    );
  }
  return applied;
}
