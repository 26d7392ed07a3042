import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { max, sql } from 'drizzle-orm';
import { type MigrationConfig, readMigrationFiles } from 'drizzle-orm/migrator';
import { bigint, integer, pgSchema, pgTable, serial, text, timestamp } from 'drizzle-orm/pg-core';
import type { StudioDatabase } from './db.ts';
import { StoreError } from './errors.ts';

/** Resolved from this file, not the working directory: the API may start from anywhere. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../drizzle', import.meta.url));

/** Drizzle's own bookkeeping: its migrator's defaults (schema `drizzle`, table `__drizzle_migrations`). */
const DRIZZLE_SCHEMA = 'drizzle';
const DRIZZLE_TABLE = '__drizzle_migrations';
const drizzleMigrations = pgSchema(DRIZZLE_SCHEMA).table(DRIZZLE_TABLE, {
  id: serial('id').primaryKey(),
  hash: text('hash').notNull(),
  createdAt: bigint('created_at', { mode: 'number' }),
});

/**
 * The table of the hand-written migrations the store had before Drizzle (versions 1..3), in the schema the
 * tables live in. Kept, and given one last row (version 4) when the database is handed to Drizzle: an API from
 * before Drizzle then refuses the database ("newer than this API") instead of running on a schema it does not know.
 */
const legacyMigrations = pgTable('migrations', {
  version: integer('version').primaryKey(),
  name: text('name').notNull(),
  appliedAt: timestamp('applied_at', { withTimezone: true }).notNull().defaultNow(),
});
const LEGACY_LATEST = 3;
const LEGACY_HANDOVER = 4;

// The hand-written migrations after the first, verbatim, for a database last opened by an API older than the
// last of them: it is brought to version 3 (what the baseline migration describes) before it is handed over.
const LEGACY_STEPS: Readonly<Record<number, { name: string; statements: readonly string[] }>> = {
  2: {
    name: 'session control: which login of the owner (a person) holds it, and since when',
    statements: [
      'ALTER TABLE sessions ADD COLUMN control_holder_login_id text',
      'ALTER TABLE sessions ADD COLUMN control_holder_name text',
      'ALTER TABLE sessions ADD COLUMN control_taken_at timestamptz',
    ],
  },
  3: {
    name: 'api tokens: agent flag (events of such tokens name the actor kind agent)',
    statements: ['ALTER TABLE api_tokens ADD COLUMN agent boolean NOT NULL DEFAULT false'],
  },
};

/** One connection holding the migration lock, and Drizzle's migrator of its driver bound to it. */
export interface MigrationConnection {
  readonly orm: StudioDatabase;
  applyMigrations(config: MigrationConfig): Promise<void>;
}

/** What {@link migrate} did. */
export interface MigrationReport {
  /** True when a database made by the hand-written migrations was adopted (baseline recorded, not re-run). */
  baselined: boolean;
  /** Tags of the migrations applied now (e.g. `0001_instances`), oldest first. */
  applied: string[];
}

interface JournalEntry {
  tag: string;
  when: number;
}

function readJournal(folder: string): JournalEntry[] {
  const journal = JSON.parse(readFileSync(`${folder}/meta/_journal.json`, 'utf8')) as {
    entries: JournalEntry[];
  };
  return journal.entries;
}

/**
 * Brings the schema up to date under the migration lock: adopts a database of the hand-written migrations,
 * refuses one migrated by newer code (SCHEMA_TOO_NEW), then runs Drizzle's migrator.
 */
export async function migrate(
  target: { exclusive<T>(fn: (connection: MigrationConnection) => Promise<T>): Promise<T> },
  folder: string = MIGRATIONS_FOLDER,
): Promise<MigrationReport> {
  const journal = readJournal(folder);
  const files = readMigrationFiles({ migrationsFolder: folder });
  const baseline = files[0];
  const newest = journal.at(-1);
  if (!baseline || !newest)
    throw new Error(`no migrations in ${folder}: run npm run db:generate -w @studio/db`);
  return target.exclusive(async ({ orm, applyMigrations }) => {
    const baselined = await adoptLegacy(orm, baseline);
    const last = await lastApplied(orm);
    if (last !== undefined && last > newest.when) {
      throw new StoreError(
        'SCHEMA_TOO_NEW',
        `the database has a migration from ${new Date(last).toISOString()}, newer than this API's newest (${newest.tag}); run the newer API or restore a backup`,
      );
    }
    await applyMigrations({ migrationsFolder: folder });
    return {
      baselined,
      applied: journal.filter((e) => last === undefined || e.when > last).map((e) => e.tag),
    };
  });
}

type RowsOf = { rows?: unknown[] } | unknown[];
const rowsOf = <T>(result: RowsOf): T[] => (Array.isArray(result) ? result : (result.rows ?? [])) as T[];

async function tableExists(orm: StudioDatabase, schemaName: string | null, table: string): Promise<boolean> {
  // Drizzle has no builder for catalog look-ups. `current_schema()` is where unqualified names resolve.
  const result = await orm.execute(sql`
    SELECT 1 FROM information_schema.tables
    WHERE table_schema = coalesce(${schemaName}::text, current_schema()) AND table_name = ${table}`);
  return rowsOf(result as RowsOf).length > 0;
}

/** The `created_at` (journal `when`) of the newest migration Drizzle recorded, or undefined for none. */
async function lastApplied(orm: StudioDatabase): Promise<number | undefined> {
  if (!(await tableExists(orm, DRIZZLE_SCHEMA, DRIZZLE_TABLE))) return undefined;
  const [row] = await orm.select({ last: max(drizzleMigrations.createdAt) }).from(drizzleMigrations);
  return row?.last === null || row?.last === undefined ? undefined : Number(row.last);
}

/**
 * A database made by the hand-written migrations: newer than version 3 (and not our hand-over mark) is refused;
 * otherwise it is brought to version 3, the baseline migration is recorded as applied in Drizzle's table (its
 * tables exist already) and the hand-over is marked, all in one transaction. True when the baseline was recorded.
 */
async function adoptLegacy(
  orm: StudioDatabase,
  baseline: { hash: string; folderMillis: number },
): Promise<boolean> {
  if (!(await tableExists(orm, null, 'migrations'))) return false;
  const [row] = await orm.select({ version: max(legacyMigrations.version) }).from(legacyMigrations);
  const version = row?.version ?? 0;
  if (version > LEGACY_HANDOVER) {
    throw new StoreError(
      'SCHEMA_TOO_NEW',
      `the database has schema version ${version}, newer than this API (${LEGACY_HANDOVER}); run the newer API or restore a backup`,
    );
  }
  if (version === LEGACY_HANDOVER) return false;
  return orm.transaction(async (tx) => {
    for (let step = version + 1; version > 0 && step <= LEGACY_LATEST; step++) {
      const legacy = LEGACY_STEPS[step];
      if (!legacy) throw new Error(`no legacy migration ${step}`); // a gap in LEGACY_STEPS: a bug here
      for (const statement of legacy.statements) await tx.execute(sql.raw(statement));
      await tx.insert(legacyMigrations).values({ version: step, name: legacy.name });
    }
    // The migrator creates this table too; it must exist now to record the baseline in it. Same DDL as Drizzle's.
    await tx.execute(sql`CREATE SCHEMA IF NOT EXISTS ${sql.identifier(DRIZZLE_SCHEMA)}`);
    await tx.execute(sql`CREATE TABLE IF NOT EXISTS ${sql.identifier(DRIZZLE_SCHEMA)}.${sql.identifier(DRIZZLE_TABLE)} (
      id SERIAL PRIMARY KEY,
      hash text NOT NULL,
      created_at bigint
    )`);
    // Version 0: the table exists but migration 1 never committed, so there are no tables: Drizzle creates them.
    const adopt = version > 0 && (await tx.$count(drizzleMigrations)) === 0;
    if (adopt)
      await tx.insert(drizzleMigrations).values({ hash: baseline.hash, createdAt: baseline.folderMillis });
    await tx.insert(legacyMigrations).values({
      version: LEGACY_HANDOVER,
      name: 'handed over to Drizzle migrations (@studio/db): needs an API with @studio/db',
    });
    return adopt;
  });
}
