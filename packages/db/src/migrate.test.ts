import { readFileSync } from 'node:fs';
import { sql } from 'drizzle-orm';
import { expect, vi } from 'vitest';
import { type Db, openDb } from './db.ts';
import { isStoreError } from './errors.ts';
import { Store } from './store.ts';
import { describeEachDriver, storeTest as test, testEnv } from './testing/store-test.ts';

const env = testEnv(process.env);
// Each test opens fresh databases and runs every migration: seconds alone, but in CI beside the runtime suites a
// PGlite one took 30 to 38 s (three timed out at the default 30 s). A hang still fails, at 120 s.
vi.setConfig({ testTimeout: 120_000 });
// Every Drizzle migration this code has, oldest first, from the journal drizzle-kit keeps.
const MIGRATIONS: string[] = (
  JSON.parse(readFileSync(new URL('../drizzle/meta/_journal.json', import.meta.url), 'utf8')) as {
    entries: { tag: string }[];
  }
).entries.map((e) => e.tag);
const AFTER_BASELINE = MIGRATIONS.slice(1);

// ---- Fixture: the store's schema as the hand-written migrations before @studio/db made it (apps/api's
// store/migrations.ts, versions 1..3), verbatim. Never edit: it stands for databases that exist.
const LIVE = `('creating', 'running', 'stopped')`;
const OLD_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`;
const OLD_MIGRATIONS: readonly { version: number; name: string; statements: readonly string[] }[] = [
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

/** The statements the old API ran on an empty database up to `version`, with its bookkeeping. */
function oldSchema(version: number): string[] {
  const out = [OLD_MIGRATIONS_TABLE];
  for (const m of OLD_MIGRATIONS.filter((m) => m.version <= version)) {
    out.push(...m.statements, `INSERT INTO migrations (version, name) VALUES (${m.version}, '${m.name}')`);
  }
  return out;
}

const RESOURCES = {
  memoryBytes: 1073741824,
  cpus: 1,
  pids: 512,
  diskBytes: 2147483648,
  inodes: 200000,
  tmpBytes: 1,
};

/** Rows as the old API wrote them, for every table (columns of version 3). */
const OLD_ROWS = [
  `INSERT INTO users (id, username, password_hash, role, created_at) VALUES
     ('usr_a', 'alice', '$argon2id$alice', 'admin', '2025-01-01T00:00:00Z'),
     ('usr_b', 'bob', '$argon2id$bob', 'user', '2025-01-02T00:00:00Z')`,
  `UPDATE users SET disabled_at = '2025-02-01T00:00:00Z' WHERE id = 'usr_b'`,
  `INSERT INTO logins (id, user_id, expires_at) VALUES ('lgn_1', 'usr_a', '2030-01-01T00:00:00Z')`,
  `INSERT INTO api_tokens (id, user_id, name, token_hash, agent) VALUES ('tok_1', 'usr_a', 'ci', 'hash-1', true)`,
  `INSERT INTO sessions (id, owner_id, backend, image, resources, instance_id, sandbox_id, state,
     control_holder_login_id, control_holder_name, control_taken_at)
   VALUES ('ses_1', 'usr_a', 'docker', 'studio-sandbox:latest', '${JSON.stringify(RESOURCES)}', 'main', 'sbx-1',
     'running', 'lgn_1', 'Alice', '2025-03-01T00:00:00Z')`,
  `INSERT INTO sessions (id, owner_id, backend, image, resources, instance_id, state, failure_reason)
   VALUES ('ses_2', 'usr_a', 'gvisor', 'studio-sandbox:latest', '${JSON.stringify(RESOURCES)}', 'main', 'failed', 'boom')`,
  `INSERT INTO audit_events (actor_id, action, outcome, target, details)
   VALUES ('usr_a', 'session.create', 'success', 'ses_1', '{"image":"studio-sandbox:latest"}')`,
];

async function rowsOf<T>(db: Db, query: ReturnType<typeof sql>): Promise<T[]> {
  const result = (await db.orm.execute(query)) as unknown as { rows: T[] };
  return result.rows;
}

const drizzleRecords = (db: Db) =>
  rowsOf<{ hash: string; created_at: string }>(
    db,
    sql`SELECT hash, created_at FROM drizzle.__drizzle_migrations ORDER BY created_at`,
  );
const legacyVersions = async (db: Db) =>
  (await rowsOf<{ version: number }>(db, sql`SELECT version FROM migrations ORDER BY version`)).map(
    (r) => r.version,
  );

/** Reads back every row the old API wrote, through the new Store. */
async function expectOldRows(store: Store, liveSessions = 1): Promise<void> {
  const alice = await store.getUserByUsername('alice');
  expect(alice).toMatchObject({
    id: 'usr_a',
    passwordHash: '$argon2id$alice',
    role: 'admin',
    disabledAt: null,
  });
  expect(alice?.createdAt.toISOString()).toBe('2025-01-01T00:00:00.000Z');
  expect((await store.getUser('usr_b'))?.disabledAt?.toISOString()).toBe('2025-02-01T00:00:00.000Z');
  expect(await store.getLoginWithUser('lgn_1')).toMatchObject({
    login: { userId: 'usr_a', revokedAt: null, expiresAt: new Date('2030-01-01T00:00:00Z') },
    user: { username: 'alice' },
  });
  expect(await store.findApiTokenByHash('hash-1')).toMatchObject({ id: 'tok_1', name: 'ci', agent: true });
  const live = await store.getSession('usr_a', 'ses_1');
  expect(live).toMatchObject({
    backend: 'docker',
    resources: RESOURCES,
    instanceId: 'main',
    sandboxId: 'sbx-1',
    state: 'running',
    failureReason: null,
    control: { loginId: 'lgn_1', name: 'Alice', since: new Date('2025-03-01T00:00:00Z') },
  });
  expect(await store.getSession('usr_a', 'ses_2')).toMatchObject({
    state: 'failed',
    failureReason: 'boom',
    control: null,
  });
  expect(await store.countLiveSessions('usr_a')).toBe(liveSessions);
  expect(await store.listAudit()).toMatchObject([
    {
      actorId: 'usr_a',
      action: 'session.create',
      target: 'ses_1',
      details: { image: 'studio-sandbox:latest' },
    },
  ]);
}

describeEachDriver('Migrations', env, test, () => {
  // Opens two fresh databases and runs every migration: over 30 s once in CI, with the Swarm stack test beside it.
  test('a new database gets every migration once, recorded in Drizzle’s table', async ({ database }) => {
    const db = await openDb(database.options);
    try {
      expect(db.migrations).toEqual({ baselined: false, applied: MIGRATIONS });
      expect(MIGRATIONS.slice(0, 2)).toEqual(['0000_baseline', '0001_instances']);
      expect(await drizzleRecords(db)).toHaveLength(MIGRATIONS.length);
    } finally {
      await db.close();
    }
    const again = await openDb(database.options);
    try {
      expect(again.migrations).toEqual({ baselined: false, applied: [] });
      expect(await drizzleRecords(again)).toHaveLength(MIGRATIONS.length);
    } finally {
      await again.close();
    }
  });

  test('adopts a database of the hand-written migrations without losing a row', async ({ database }) => {
    await database.exec([...oldSchema(3), ...OLD_ROWS]);
    const db = await openDb(database.options);
    try {
      // The baseline is recorded (not re-run: that would fail on the existing tables); the next one runs.
      expect(db.migrations).toEqual({ baselined: true, applied: AFTER_BASELINE });
      expect(await drizzleRecords(db)).toHaveLength(MIGRATIONS.length);
      // The old API is told the database moved on: it refuses version 4 as "newer than this API".
      expect(await legacyVersions(db)).toEqual([1, 2, 3, 4]);
      const store = await Store.open(db);
      await expectOldRows(store);
      // Existing sessions' sandboxes get their owner records (0002), so reconciliation treats them as new ones.
      expect(await store.listSandboxOwners('main')).toMatchObject([
        { id: 'sbx-1', backend: 'docker', instanceId: 'main', sessionId: 'ses_1' },
      ]);
      // And the adopted database works as a new one: writes, the new table.
      await store.reserveSession(
        {
          id: 'ses_3',
          ownerId: 'usr_a',
          backend: 'docker',
          image: 'i',
          resources: RESOURCES,
          instanceId: 'main',
        },
        5,
      );
      expect(await store.countLiveSessions('usr_a')).toBe(2);
      expect(
        await store.claimInstance({
          id: 'main',
          holder: 'h',
          host: 'x',
          pid: 1,
          dataDir: '/d',
          leaseMs: 1000,
        }),
      ).toEqual({ ok: true });
    } finally {
      await db.close();
    }
    const again = await openDb(database.options);
    try {
      expect(again.migrations).toEqual({ baselined: false, applied: [] });
      expect(await legacyVersions(again)).toEqual([1, 2, 3, 4]);
      await expectOldRows(await Store.open(again), 2); // ses_3 added above
    } finally {
      await again.close();
    }
  });

  test('brings a database last opened by an older hand-written version (1) up before adopting it', async ({
    database,
  }) => {
    await database.exec([
      ...oldSchema(1),
      `INSERT INTO users (id, username, password_hash, role) VALUES ('usr_a', 'alice', 'h', 'user')`,
      `INSERT INTO api_tokens (id, user_id, name, token_hash) VALUES ('tok_1', 'usr_a', 'ci', 'hash-1')`,
    ]);
    const db = await openDb(database.options);
    try {
      expect(db.migrations.baselined).toBe(true);
      expect(await legacyVersions(db)).toEqual([1, 2, 3, 4]);
      const store = await Store.open(db);
      expect(await store.findApiTokenByHash('hash-1')).toMatchObject({ userId: 'usr_a', agent: false });
      const s = await store.reserveSession(
        {
          id: 'ses_1',
          ownerId: 'usr_a',
          backend: 'docker',
          image: 'i',
          resources: RESOURCES,
          instanceId: 'main',
        },
        5,
      );
      expect((await store.setSessionControl('usr_a', s.id, { loginId: 'l', name: 'A' }))?.control?.name).toBe(
        'A',
      );
    } finally {
      await db.close();
    }
  });

  test('refuses a database of a newer hand-written version, and leaves it untouched', async ({
    database,
  }) => {
    await database.exec([...oldSchema(3), `INSERT INTO migrations (version, name) VALUES (999, 'future')`]);
    const opening = openDb(database.options);
    await expect(opening).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW' });
    await expect(opening).rejects.toThrow(/schema version 999, newer than this API/);
    await database.exec([`DELETE FROM migrations WHERE version = 999`]);
    const db = await openDb(database.options); // nothing was half-done: it still adopts cleanly
    try {
      expect(db.migrations).toEqual({ baselined: true, applied: AFTER_BASELINE });
    } finally {
      await db.close();
    }
  });

  test('refuses a database migrated by newer code (an unknown Drizzle migration)', async ({ database }) => {
    const db = await openDb(database.options);
    await db.orm.execute(
      sql`INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('future', ${Date.now() + 10 ** 12})`,
    );
    await db.close();
    const error = await openDb(database.options).catch((e: unknown) => e);
    expect(isStoreError(error, 'SCHEMA_TOO_NEW')).toBe(true);
    expect((error as Error).message).toContain(`newer than this API's newest (${MIGRATIONS.at(-1)})`);
  });

  test('the schema from Drizzle is the hand-written one: same columns, constraints and indexes', async ({
    database,
    db,
  }) => {
    await database.exec(oldSchema(3));
    const old = await openDb(database.options); // adopted: its tables are the old SQL's
    try {
      const fresh = await catalog(db);
      expect(fresh.columns.length).toBeGreaterThan(40);
      expect(await catalog(old)).toEqual(fresh);
    } finally {
      await old.close();
    }
  });
});

describeEachDriver('Migrations, concurrent', env, test, (driver) => {
  // PGlite is one connection in one process: there is nothing to race.
  test.skipIf(driver === 'pglite')(
    'API instances opening one new database at once migrate it once (advisory lock; PostgreSQL only)',
    async ({ database }) => {
      const dbs = await Promise.all(Array.from({ length: 4 }, () => openDb(database.options)));
      try {
        const applied = dbs.map((d) => d.migrations.applied.length).sort();
        expect(applied).toEqual([0, 0, 0, MIGRATIONS.length]);
        expect(await drizzleRecords(dbs[0] as Db)).toHaveLength(MIGRATIONS.length);
      } finally {
        await Promise.all(dbs.map((d) => d.close()));
      }
    },
  );
});

/** The store's tables as the catalog describes them (the bookkeeping tables left out). */
async function catalog(db: Db) {
  const tables = sql`('users', 'logins', 'api_tokens', 'sessions', 'audit_events')`;
  const columns = await rowsOf(
    db,
    sql`SELECT table_name, ordinal_position, column_name, data_type, is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = current_schema() AND table_name IN ${tables}
        ORDER BY table_name, ordinal_position`,
  );
  const constraints = await rowsOf(
    db,
    sql`SELECT c.conrelid::regclass::text AS table_name, c.conname, c.contype, pg_get_constraintdef(c.oid) AS def
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = current_schema() AND c.conrelid::regclass::text IN ${tables}
        ORDER BY 1, 2`,
  );
  const indexes = await rowsOf(
    db,
    sql`SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = current_schema() AND tablename IN ${tables} ORDER BY 1, 2`,
  );
  return { columns, constraints, indexes };
}
