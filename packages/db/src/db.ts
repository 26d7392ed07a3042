import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import { drizzle as drizzleNodePg } from 'drizzle-orm/node-postgres';
import { migrate as migrateNodePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import pg from 'pg';
import { StoreError } from './errors.ts';
import { type MigrationConnection, type MigrationReport, migrate } from './migrate.ts';
import * as schema from './schema.ts';

/** The store's tables, typed for Drizzle queries. */
export type StudioSchema = typeof schema;

/** A Drizzle database over the store's schema: the same query API on PGlite and on node-postgres. */
export type StudioDatabase = PgDatabase<PgQueryResultHKT, StudioSchema>;

/** An open database whose schema is up to date (see {@link openDb}). */
export interface Db {
  readonly kind: 'pglite' | 'postgres';
  /** Drizzle over this database. */
  readonly orm: StudioDatabase;
  /** What opening it did to the schema (for the start-up log). */
  readonly migrations: MigrationReport;
  close(): Promise<void>;
}

/** Options for {@link openDb}. */
export interface OpenDbOptions {
  /** `postgres://…`: use that server. Otherwise PGlite. */
  databaseUrl?: string | undefined;
  /** PGlite's data directory; omitted means in memory (tests). */
  pgliteDir?: string | undefined;
  /**
   * Create a new PGlite data directory in a short-lived child process (a long-running server's choice: initdb's
   * memory then goes back to the system). Costs one more PGlite start on the first open. Default false.
   */
  initApart?: boolean;
}

interface Driver {
  readonly kind: Db['kind'];
  readonly orm: StudioDatabase;
  exclusive<T>(fn: (connection: MigrationConnection) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

// Any constant works; it only has to be the same in every API instance sharing a database. The hand-written
// migrations before Drizzle took the same lock, so an old and a new instance never migrate at once either.
const MIGRATION_LOCK = 0x5374_7564;

/**
 * Opens the store's database, PostgreSQL when `databaseUrl` is set, else PGlite in `pgliteDir` (or memory), and
 * brings its schema up to date with the migrations in this package's `drizzle/` folder. A database made by the
 * hand-written migrations before Drizzle is recognised and adopted without re-running anything.
 * Throws UNAVAILABLE (server unreachable) or SCHEMA_TOO_NEW (migrated by newer code).
 */
export async function openDb(options: OpenDbOptions): Promise<Db> {
  const driver = options.databaseUrl
    ? await openPostgres(options.databaseUrl)
    : await openPglite(options.pgliteDir, options.initApart === true);
  try {
    const migrations = await migrate(driver);
    return { kind: driver.kind, orm: driver.orm, migrations, close: () => driver.close() };
  } catch (error) {
    await driver.close().catch(() => undefined);
    throw error;
  }
}

// PGlite's memory is WebAssembly linear memory, which only ever grows: what Postgres touched once stays resident
// for the life of the process (issue 17: an idle API held 0.5-0.9 GiB). Two things touched most of it:
// - shared_buffers at Postgres's default 128 MB, for a store of a few MB served by one connection: 16 MB;
// - initdb on a first start (about 600 MB at its peak), run with `initApart` in a short-lived child process
//   instead, whose memory goes back to the system when it exits (in-process, glibc keeps most of it even after a
//   close).
const PGLITE_START_PARAMS = [
  ...PGlite.defaultStartParams,
  '-c',
  'shared_buffers=16MB',
  '-c',
  'wal_buffers=1MB',
];

const INITDB_CHILD = `
const [url, dir, params] = process.argv.slice(1);
const { PGlite } = await import(url);
const lite = await PGlite.create(dir, { startParams: JSON.parse(params) });
await lite.close();
`;

/** Creates a new PGlite data directory in a child process (see above); false when that could not be done. */
async function initPgliteApart(dir: string): Promise<boolean> {
  let url: string;
  try {
    url = import.meta.resolve('@electric-sql/pglite');
  } catch {
    return false; // a loader without import.meta.resolve (a test runner): initdb in this process instead
  }
  try {
    await promisify(execFile)(
      process.execPath,
      ['--input-type=module', '-e', INITDB_CHILD, url, dir, JSON.stringify(PGLITE_START_PARAMS)],
      { timeout: 120_000 },
    );
    return true;
  } catch {
    return false; // opened below in this process, which reports the error if there is one
  }
}

async function openPglite(dir: string | undefined, initApart: boolean): Promise<Driver> {
  if (dir !== undefined) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (initApart && !existsSync(join(dir, 'PG_VERSION'))) await initPgliteApart(dir);
  }
  const options = { startParams: PGLITE_START_PARAMS };
  const lite = dir === undefined ? await PGlite.create(options) : await PGlite.create(dir, options);
  // PGlite runs every query and transaction under one mutex, so a transaction is never interleaved with
  // other statements; row locks behave as on a server with one connection.
  const orm = drizzlePglite({ client: lite, schema });
  return {
    kind: 'pglite',
    orm: orm as unknown as StudioDatabase,
    exclusive: (fn) =>
      fn({ orm: orm as unknown as StudioDatabase, applyMigrations: (c) => migratePglite(orm, c) }),
    close: () => lite.close(),
  };
}

async function openPostgres(url: string): Promise<Driver> {
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  // An idle client that loses its server emits 'error' on the pool; without a listener Node would crash.
  pool.on('error', () => undefined);
  // Fail at start-up, with the URL's host only (never its password), when the server is unreachable.
  await pool.query('SELECT 1').catch((error: unknown) => {
    void pool.end();
    throw new StoreError(
      'UNAVAILABLE',
      `cannot connect to PostgreSQL at ${safeHost(url)}: ${(error as Error).message}; check that the server runs and the database URL is right`,
      { cause: error },
    );
  });
  const orm = drizzleNodePg({ client: pool, schema });
  return {
    kind: 'postgres',
    orm: orm as unknown as StudioDatabase,
    async exclusive(fn) {
      const client = await pool.connect();
      let broken = false;
      try {
        const locked = drizzleNodePg({ client, schema });
        await locked.execute(sql`SELECT pg_advisory_lock(${MIGRATION_LOCK})`);
        try {
          return await fn({
            orm: locked as unknown as StudioDatabase,
            applyMigrations: (c) => migrateNodePg(locked, c),
          });
        } finally {
          await locked.execute(sql`SELECT pg_advisory_unlock(${MIGRATION_LOCK})`).catch(() => {
            broken = true; // dropping the connection releases the lock
          });
        }
      } finally {
        client.release(broken);
      }
    },
    close: () => pool.end(),
  };
}

/** The host:port/db of a database URL, for messages; never the credentials. */
export function safeHost(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname}`;
  } catch {
    return '(unparseable database URL)';
  }
}
