import { describe, test } from 'vitest';
import type { Db } from '../db.ts';
import { Store } from '../store.ts';
import {
  createTestDatabase,
  driverSkipReason,
  openTestDb,
  TEST_DRIVERS,
  type TestDatabase,
  type TestDatabaseEnv,
  type TestDriver,
} from './test-db.ts';

/**
 * The store's test, with fixtures parameterised by `driver` (set per suite by {@link describeEachDriver}):
 * - `database`: a new, empty database that can be opened and reopened (deleted after the test);
 * - `db`: an open, migrated database (PGlite in memory; a fresh database on PostgreSQL), closed after;
 * - `store`: a Store over `db`.
 * A test only gets (and pays for) the fixtures it names.
 */
export const storeTest = test
  .extend('driver', 'pglite' as TestDriver)
  .extend('env', { ci: false } as TestDatabaseEnv)
  .extend('database', async ({ driver, env }, { onCleanup }): Promise<TestDatabase> => {
    const database = await createTestDatabase(driver, env);
    onCleanup(() => database.dispose());
    return database;
  })
  .extend('db', async ({ driver, env }, { onCleanup }): Promise<Db> => {
    const opened = await openTestDb(driver, env);
    onCleanup(() => opened.dispose());
    return opened.db;
  })
  .extend('store', async ({ db }) => Store.open(db));

/**
 * Declares the same suite once per driver: `body` runs inside a describe whose fixtures use that driver. The
 * PostgreSQL suite is skipped with its reason when `env.databaseUrl` is unset (and throws in CI).
 */
export function describeEachDriver(
  title: string,
  env: TestDatabaseEnv,
  api: { override(fixtures: { driver: TestDriver; env: TestDatabaseEnv }): unknown },
  body: (driver: TestDriver) => void,
): void {
  for (const driver of TEST_DRIVERS) {
    const skip = driverSkipReason(driver, env);
    describe.skipIf(skip !== undefined)(`${title} on ${driver}${skip ? ` (skipped: ${skip})` : ''}`, () => {
      api.override({ driver, env });
      body(driver);
    });
  }
}

/** The test environment as the package's tests read it (tests may read the environment; the package may not). */
export function testEnv(vars: Record<string, string | undefined>): TestDatabaseEnv {
  return { databaseUrl: vars.STUDIO_TEST_DATABASE_URL, ci: vars.CI === 'true' || vars.CI === '1' };
}
