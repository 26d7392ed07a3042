import { DrizzleQueryError } from 'drizzle-orm';

/**
 * Why a store operation failed. Callers switch on `code`; the message says what to do.
 * - `CONFLICT`: a value that must be unique is taken (a username), or a claim changed hands while it ran.
 * - `OWNER_INACTIVE`: the owner of the record is disabled or gone.
 * - `SESSION_LIMIT`: the owner already holds the most live sessions allowed.
 * - `INVALID_INPUT`: an argument the store cannot use (a lease that is not a positive duration).
 * - `SCHEMA_TOO_NEW`: the database was migrated by newer code than this; refusing protects its data.
 * - `UNAVAILABLE`: the database server cannot be reached (at open, or it went away).
 * - `QUERY_FAILED`: any other failure of a statement; `cause` holds the driver's error.
 */
export const STORE_ERROR_CODES = [
  'CONFLICT',
  'OWNER_INACTIVE',
  'SESSION_LIMIT',
  'INVALID_INPUT',
  'SCHEMA_TOO_NEW',
  'UNAVAILABLE',
  'QUERY_FAILED',
] as const;

export type StoreErrorCode = (typeof STORE_ERROR_CODES)[number];

/** The one error class of @studio/db: a fixed `code`, a message that names the fix, the original on `cause`. */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/** True when `error` is a {@link StoreError} (by `code`, so a copy from another module instance counts), optionally with `code`. */
export function isStoreError(error: unknown, code?: StoreErrorCode): error is StoreError {
  if (typeof error !== 'object' || error === null || (error as { name?: unknown }).name !== 'StoreError') {
    return false;
  }
  const actual = (error as { code?: unknown }).code;
  if (!STORE_ERROR_CODES.includes(actual as StoreErrorCode)) return false;
  return code === undefined || actual === code;
}

// SQLSTATE classes and Node socket errors that mean "the server is not there", not "the statement is wrong".
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0)/;
const UNAVAILABLE_ERRNO = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
]);

/**
 * The driver's own error under Drizzle's wrapper. Drizzle wraps every failed statement in an error whose message
 * holds the statement and its parameters (password hashes, token hashes): that wrapper must never reach a log.
 */
export function driverError(error: unknown): unknown {
  let current = error;
  for (let depth = 0; depth < 5 && current instanceof DrizzleQueryError; depth++) {
    if (current.cause === undefined) return new Error('a database statement failed (no driver error)');
    current = current.cause;
  }
  return current;
}

/** The SQLSTATE (e.g. `23505`) or Node error code of a failed statement, if any. */
export function sqlStateOf(error: unknown): string | undefined {
  const code = (driverError(error) as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Turns any failure of a statement into a {@link StoreError}: store errors pass through; the rest become
 * UNAVAILABLE or QUERY_FAILED with the driver's message (never Drizzle's, which lists parameters).
 */
export function toStoreError(error: unknown): StoreError {
  if (isStoreError(error)) return error;
  const original = driverError(error);
  const code = sqlStateOf(original);
  const message = original instanceof Error ? original.message : String(original);
  const unavailable =
    (code !== undefined && (UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_ERRNO.has(code))) ||
    /Connection terminated|connection is closed|PGlite is closed/i.test(message);
  if (unavailable) {
    return new StoreError('UNAVAILABLE', `the database is unavailable (${message}); check that it runs`, {
      cause: original,
    });
  }
  return new StoreError('QUERY_FAILED', `a database statement failed: ${message}`, { cause: original });
}

/**
 * True when `error` (or an error on its `cause` chain) means the database is not there: a {@link StoreError}
 * UNAVAILABLE, or a driver's connection failure that did not pass through the Store (refused, reset,
 * terminated, a closed PGlite, SQLSTATE classes 08, 53 and 57P0). Callers answer it as retryable, not internal.
 */
export function isStoreUnavailable(error: unknown): boolean {
  let current = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    if (isStoreError(current)) return current.code === 'UNAVAILABLE';
    if (current instanceof Error && toStoreError(current).code === 'UNAVAILABLE') return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}
