/**
 * The closed set of failure codes every isolation backend reports. Callers branch on `code`, never on
 * messages or SDK error classes, so a backend can be swapped without changing a caller.
 */
export const ISOLATION_ERROR_CODES = [
  /** The sandbox, file or process named does not exist (or is not this caller's to see). */
  'NOT_FOUND',
  /** The operation ran past its wall-clock limit; the whole process group was killed. */
  'TIMEOUT',
  /** A limit of the sandbox (memory, pids, disk, inodes, output) stopped the operation. */
  'RESOURCE_LIMIT',
  /** The runtime (Docker daemon, runsc) cannot be reached or is not installed. */
  'UNAVAILABLE',
  /** This backend cannot do what was asked; `capabilities()` says so in advance. */
  'UNSUPPORTED',
  /** The request itself is malformed or outside policy (bad path, bad spec). */
  'INVALID_INPUT',
  /** The target already exists (a file, a sandbox id). */
  'ALREADY_EXISTS',
  /** The sandbox refused the operation (permission denied inside, path escapes the workspace). */
  'FORBIDDEN',
  /** The sandbox is not in a state that allows the operation (stopped, failed). */
  'INVALID_STATE',
  /**
   * The host has no room for what was asked (a workspace's quota does not fit in the data directory's free space
   * minus its headroom): the operator frees space or lowers the quota; the caller can do nothing but retry later.
   */
  'HOST_DISK_FULL',
  /**
   * A sandbox's saved state (memory and processes) could not be restored: the saved state is discarded, the
   * workspace is intact, and starting the sandbox again starts it afresh.
   */
  'RESTORE_FAILED',
  /** The operation was cancelled by its caller. */
  'CANCELLED',
  /** Anything else: a bug or an unexpected runtime answer; `cause` holds the original. */
  'INTERNAL',
] as const;

export type IsolationErrorCode = (typeof ISOLATION_ERROR_CODES)[number];

/** Options for {@link IsolationError}. */
export interface IsolationErrorOptions {
  cause?: unknown;
  /** Extra machine-readable facts (e.g. `{ limit: 'memory' }`), never secrets. */
  details?: Record<string, unknown>;
}

/**
 * The one error class of `@studio/isolation` and every backend. `message` names the fix
 * ("runsc not found: apt-get install runsc"); `cause` keeps the SDK's original error for logs only
 * (it may hold host paths, so the API never sends it to a client).
 */
export class IsolationError extends Error {
  override readonly name = 'IsolationError';
  readonly code: IsolationErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: IsolationErrorCode, message: string, options: IsolationErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details;
  }
}

/** True when `error` is an isolation error, optionally with the given code. Checks the code, not only the class. */
export function isIsolationError(error: unknown, code?: IsolationErrorCode): error is IsolationError {
  if (typeof error !== 'object' || error === null) return false;
  const c = (error as { code?: unknown }).code;
  if (typeof c !== 'string' || !(ISOLATION_ERROR_CODES as readonly string[]).includes(c)) return false;
  if ((error as { name?: unknown }).name !== 'IsolationError') return false;
  return code === undefined || c === code;
}
