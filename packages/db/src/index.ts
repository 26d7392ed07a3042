// The public surface of @studio/db: open a database (migrated at open), the Store over it, its records and
// its one error class. The tables are exported for tests and tools that query with Drizzle directly.

// Drizzle's tagged template, for tests and tools that run a statement the Store has no method for.
export { sql } from 'drizzle-orm';
export type { Db, OpenDbOptions, StudioDatabase, StudioSchema } from './db.ts';
export { openDb, safeHost } from './db.ts';
export type { StoreErrorCode } from './errors.ts';
export { isStoreError, isStoreUnavailable, STORE_ERROR_CODES, StoreError } from './errors.ts';
export type { MigrationReport } from './migrate.ts';
export type { NodeAvailability, NodeCapacity } from './schema.ts';
export * as schema from './schema.ts';
export { NODE_AVAILABILITIES } from './schema.ts';
export type {
  ApiTokenRecord,
  AuditEvent,
  AuditOutcome,
  AuditRecord,
  ClaimResult,
  E2bSandboxRecord,
  InstanceClaim,
  InstanceHolder,
  LoginRecord,
  NewE2bSandbox,
  NewSession,
  NewSessionEvent,
  NewSnapshot,
  NewTemplate,
  NodeRecord,
  NodeReport,
  Role,
  SandboxOwner,
  SecretRecord,
  SessionControl,
  SessionEventRecord,
  SessionNetwork,
  SessionRecord,
  SessionResources,
  SessionState,
  SnapshotRecord,
  TemplatePatch,
  TemplateRecord,
  TemplateState,
  UserRecord,
} from './store.ts';
export { LIVE_STATES, Store } from './store.ts';
