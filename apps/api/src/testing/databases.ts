import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { type Db, openDb } from '../store/db.ts';

/** The PostgreSQL server the store tests use, e.g. `postgres://studio:studio@127.0.0.1:5432/studio_test`. */
export const TEST_DATABASE_URL = process.env.STUDIO_TEST_DATABASE_URL;
const inCi = process.env.CI === 'true' || process.env.CI === '1';

/** Why the PostgreSQL variant is skipped, or undefined when it runs. In CI a missing server is an error. */
export function postgresSkipReason(): string | undefined {
  if (TEST_DATABASE_URL) return undefined;
  if (inCi) {
    throw new Error(
      'STUDIO_TEST_DATABASE_URL is not set; CI must run the store tests against PostgreSQL (see apps/api/README.md)',
    );
  }
  return 'STUDIO_TEST_DATABASE_URL is not set: PostgreSQL store tests skipped (PGlite ran)';
}

/** A database for one test: PGlite in memory, or a fresh schema on the test server dropped by `dispose`. */
export interface TestDb {
  db: Db;
  dispose(): Promise<void>;
}

export async function openTestDb(kind: 'pglite' | 'postgres'): Promise<TestDb> {
  if (kind === 'pglite') {
    const db = await openDb({});
    return { db, dispose: () => db.close() };
  }
  if (!TEST_DATABASE_URL) throw new Error('STUDIO_TEST_DATABASE_URL is not set');
  const schema = `studio_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const url = new URL(TEST_DATABASE_URL);
  url.searchParams.set('options', `-c search_path=${schema}`);
  const db = await openDb({ databaseUrl: url.toString() });
  return {
    db,
    async dispose() {
      await db.close();
      await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
    },
  };
}
