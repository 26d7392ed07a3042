// @studio/db/testing: databases for tests (PGlite in memory or a temp dir; a fresh database on a PostgreSQL
// test server). For tests only; the caller passes what it read from the environment.
export type { TestDatabase, TestDatabaseEnv, TestDb, TestDriver } from './test-db.ts';
export { createTestDatabase, driverSkipReason, freshPglite, openTestDb, TEST_DRIVERS } from './test-db.ts';
