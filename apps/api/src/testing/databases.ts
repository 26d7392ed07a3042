import {
  driverSkipReason,
  openTestDb as openDbForTest,
  type TestDb,
  type TestDriver,
} from '@studio/db/testing';

export type { TestDb } from '@studio/db/testing';

/** The PostgreSQL server the store tests use, e.g. `postgres://postgres@127.0.0.1:54329/studio_test`. */
export const TEST_DATABASE_URL = process.env.STUDIO_TEST_DATABASE_URL;
const env = { databaseUrl: TEST_DATABASE_URL, ci: process.env.CI === 'true' || process.env.CI === '1' };

/** Why the PostgreSQL variant is skipped, or undefined when it runs. In CI a missing server is an error. */
export function postgresSkipReason(): string | undefined {
  return driverSkipReason('postgres', env);
}

/** A database for one test: PGlite in memory, or a fresh database on the test server dropped by `dispose`. */
export function openTestDb(kind: TestDriver): Promise<TestDb> {
  return openDbForTest(kind, env);
}
