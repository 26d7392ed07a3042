import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { getTableName, is, sql } from 'drizzle-orm';
import { PgTable } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { type Db, type OpenDbOptions, openDb } from '../db.ts';
import * as schema from '../schema.ts';

/** The two drivers the store runs on; every store test runs on both. */
export const TEST_DRIVERS = ['pglite', 'postgres'] as const;
export type TestDriver = (typeof TEST_DRIVERS)[number];

/** What the caller read from its environment (this package reads none). */
export interface TestDatabaseEnv {
  /** A PostgreSQL database URL whose role may CREATE DATABASE (STUDIO_TEST_DATABASE_URL). */
  databaseUrl?: string | undefined;
  /** True in CI, where a missing PostgreSQL is an error rather than a skip. */
  ci: boolean;
}

/** Why tests on `driver` skip (undefined: they run). In CI a missing PostgreSQL throws instead of skipping. */
export function driverSkipReason(driver: TestDriver, env: TestDatabaseEnv): string | undefined {
  if (driver === 'pglite' || env.databaseUrl) return undefined;
  if (env.ci) {
    throw new Error(
      'STUDIO_TEST_DATABASE_URL is not set; CI must run the store tests against PostgreSQL: export STUDIO_TEST_DATABASE_URL=$(bash infra/setup-postgres.sh)',
    );
  }
  return 'STUDIO_TEST_DATABASE_URL is not set: PostgreSQL store tests skipped (PGlite ran)';
}

/**
 * A new, empty database for one test that can be opened (and reopened) with {@link openDb}: a PGlite data
 * directory under the system temp dir, or a database `studio_test_<random>` created on the test server. `exec`
 * runs raw SQL on it without the store (to build an old schema); `dispose` deletes it.
 */
export interface TestDatabase {
  readonly driver: TestDriver;
  readonly options: OpenDbOptions;
  exec(statements: readonly string[]): Promise<void>;
  dispose(): Promise<void>;
}

export async function createTestDatabase(driver: TestDriver, env: TestDatabaseEnv): Promise<TestDatabase> {
  if (driver === 'pglite') {
    const dir = mkdtempSync(join(tmpdir(), 'studio-db-test-'));
    const pgliteDir = join(dir, 'pglite');
    return {
      driver,
      options: { pgliteDir },
      async exec(statements) {
        const lite = await PGlite.create(pgliteDir);
        try {
          for (const statement of statements) await lite.query(statement);
        } finally {
          await lite.close();
        }
      },
      async dispose() {
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  if (!env.databaseUrl) throw new Error('STUDIO_TEST_DATABASE_URL is not set');
  const name = `studio_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: env.databaseUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } catch (error) {
    await admin.end();
    throw error;
  }
  const url = new URL(env.databaseUrl);
  url.pathname = `/${name}`;
  const databaseUrl = url.toString();
  return {
    driver,
    options: { databaseUrl },
    async exec(statements) {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      try {
        for (const statement of statements) await client.query(statement);
      } finally {
        await client.end();
      }
    },
    async dispose() {
      try {
        await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await admin.end();
      }
    },
  };
}

// Booting PGlite (its WebAssembly PostgreSQL) costs seconds on a loaded machine; emptying its tables costs
// milliseconds. So a test file's PGlite tests share one in-memory database, emptied before each test. Tests in a
// file run one after another, and each file gets its own module instance, hence its own database.
let sharedPglite: Promise<Db> | undefined;

/**
 * An open, migrated, empty in-memory PGlite database, shared by the tests of one file (each call empties it
 * first: every table, identities restarted). Its `close()` does nothing; the database ends with the file.
 */
export async function freshPglite(): Promise<Db> {
  sharedPglite ??= openDb({});
  const db = await sharedPglite;
  const tables = Object.values(schema)
    .filter((t) => is(t, PgTable))
    .map((t) => `"${getTableName(t as PgTable)}"`);
  await db.orm.execute(sql.raw(`TRUNCATE ${tables.join(', ')} RESTART IDENTITY CASCADE`));
  return { ...db, close: async () => undefined };
}

/** An open, migrated database for one test: PGlite in memory, or a fresh database on the test server. */
export interface TestDb {
  db: Db;
  dispose(): Promise<void>;
}

export async function openTestDb(driver: TestDriver, env: TestDatabaseEnv): Promise<TestDb> {
  if (driver === 'pglite') return { db: await freshPglite(), dispose: async () => undefined };
  const database = await createTestDatabase(driver, env);
  try {
    const db = await openDb(database.options);
    return {
      db,
      async dispose() {
        await db.close().catch(() => undefined);
        await database.dispose();
      },
    };
  } catch (error) {
    await database.dispose();
    throw error;
  }
}
