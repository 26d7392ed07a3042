import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';

/** Something that runs one SQL statement with positional parameters ($1, $2, …). */
export interface Queryable {
  query<T extends object = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<T[]>;
}

/**
 * A PostgreSQL database: PGlite embedded in the process, or a server through `pg`. One dialect for both;
 * `transaction` runs `fn` in one transaction on one connection (BEGIN … COMMIT, ROLLBACK on throw).
 */
export interface Db extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** Options for {@link openDb}. */
export interface OpenDbOptions {
  /** `postgres://…`: use that server. Otherwise PGlite. */
  databaseUrl?: string | undefined;
  /** PGlite's data directory; omitted means in memory (tests). */
  pgliteDir?: string | undefined;
}

/** Opens the store's database: PostgreSQL when `databaseUrl` is set, else PGlite in `pgliteDir` (or memory). */
export async function openDb(options: OpenDbOptions): Promise<Db> {
  if (options.databaseUrl) return openPostgres(options.databaseUrl);
  return openPglite(options.pgliteDir);
}

async function openPglite(dir: string | undefined): Promise<Db> {
  if (dir !== undefined) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const lite = dir === undefined ? await PGlite.create() : await PGlite.create(dir);
  // PGlite runs every query and transaction under one mutex, so a transaction is never interleaved
  // with other statements; row locks behave as on a server with one connection.
  return {
    kind: 'pglite',
    async query<T extends object>(sql: string, params: readonly unknown[] = []) {
      return (await lite.query<T>(sql, params as unknown[])).rows;
    },
    transaction<T>(fn: (tx: Queryable) => Promise<T>) {
      return lite.transaction((tx) =>
        fn({
          async query<R extends object>(sql: string, params: readonly unknown[] = []) {
            return (await tx.query<R>(sql, params as unknown[])).rows;
          },
        }),
      );
    },
    close: () => lite.close(),
  };
}

async function openPostgres(url: string): Promise<Db> {
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  // An idle client that loses its server emits 'error' on the pool; without a listener Node would crash.
  pool.on('error', () => undefined);
  // Fail at start-up, with the URL's host only (never its password), when the server is unreachable.
  await pool.query('SELECT 1').catch((error: unknown) => {
    void pool.end();
    const host = safeHost(url);
    throw new Error(
      `cannot connect to PostgreSQL at ${host} (DATABASE_URL): ${(error as Error).message}; check that the server runs and the URL is right`,
    );
  });
  return {
    kind: 'postgres',
    async query<T extends object>(sql: string, params: readonly unknown[] = []) {
      return (await pool.query(sql, params as unknown[])).rows as T[];
    },
    async transaction<T>(fn: (tx: Queryable) => Promise<T>) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const result = await fn({
          async query<R extends object>(sql: string, params: readonly unknown[] = []) {
            return (await client.query(sql, params as unknown[])).rows as R[];
          },
        });
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      } finally {
        client.release();
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
    return '(unparseable DATABASE_URL)';
  }
}
