import { isStoreError, isStoreUnavailable, type StoreErrorCode } from '@studio/db';
import { isIsolationError } from '@studio/isolation';
import { isPolicyError, type PolicyErrorCode } from '@studio/policy';
import { TRPCError } from '@trpc/server';
import type { TRPC_ERROR_CODE_KEY } from '@trpc/server/rpc';
import { ZodError } from 'zod';

/** Refusals the API itself makes (beyond policy and isolation codes). */
export const APP_ERROR_CODES = [
  'UNAUTHENTICATED',
  'INVALID_CREDENTIALS',
  'TOKEN_REVOKED',
  // A sign-in whose password someone else chose (the first admin's generated one, an admin's reset): it may
  // only change it (auth.changePassword), read auth.me or sign out until then.
  'PASSWORD_CHANGE_REQUIRED',
  'FORBIDDEN',
  'ORIGIN_REFUSED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'SESSION_LIMIT',
  'INVALID_STATE',
  'RESUME_EXPIRED',
  'IDEMPOTENCY_KEY_REUSED',
  'HUMAN_HAS_CONTROL',
  'EGRESS_DENIED',
  'TEMPLATE_NOT_FOUND',
  'TEMPLATE_NOT_READY',
  'TEMPLATE_START_FAILED',
  'BACKEND_UNAVAILABLE',
  'FILE_TOO_LARGE',
  'FILE_NOT_TEXT',
  'INPUT_TOO_LARGE',
  'LIMIT_EXCEEDED',
  'INPUT_INVALID',
  // The session's backend cannot do it (pause, fork or snapshot on a backend without the capability).
  'UNSUPPORTED',
  // Retryable: the store is down, or the server is shutting down. HTTP 503 with Retry-After.
  'UNAVAILABLE',
  'INTERNAL',
] as const;

export type AppErrorCode = (typeof APP_ERROR_CODES)[number];

/** An API refusal with a stable `code` and a message that tells the caller what to do. */
export class AppError extends Error {
  override readonly name = 'AppError';
  readonly code: AppErrorCode;
  /** For UNAVAILABLE: when to retry (sent as `Retry-After`). */
  readonly retryAfterSeconds: number | undefined;
  constructor(
    code: AppErrorCode,
    message: string,
    options?: { cause?: unknown; retryAfterSeconds?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

/** Seconds a client waits before retrying a call the store could not answer (a restart takes a few). */
export const STORE_RETRY_AFTER_SECONDS = 5;

const STORE_UNAVAILABLE_MESSAGE =
  'the database is unavailable right now; retry after Retry-After seconds (the operator is told in the server log and /readyz)';

/** What a client sees of any failure: the tRPC code (HTTP status), a stable Studio code and a safe message. */
export interface MappedError {
  trpcCode: TRPC_ERROR_CODE_KEY;
  /** Stable, documented: an `AppErrorCode`, a `PolicyErrorCode`, an isolation code or a tRPC code. */
  studioCode: string;
  message: string;
  /** True when the message was replaced because the original may hold internals (host paths, SQL). */
  hidden: boolean;
  /** Set for retryable refusals (UNAVAILABLE): the `Retry-After` the HTTP response carries. */
  retryAfterSeconds?: number;
}

const APP_TO_TRPC: Record<AppErrorCode, TRPC_ERROR_CODE_KEY> = {
  UNAUTHENTICATED: 'UNAUTHORIZED',
  INVALID_CREDENTIALS: 'UNAUTHORIZED',
  TOKEN_REVOKED: 'UNAUTHORIZED',
  // Signed in, but refused until the password is changed: 403, not 401, so clients do not drop the sign-in.
  PASSWORD_CHANGE_REQUIRED: 'FORBIDDEN',
  FORBIDDEN: 'FORBIDDEN',
  ORIGIN_REFUSED: 'FORBIDDEN',
  NOT_FOUND: 'NOT_FOUND',
  ALREADY_EXISTS: 'CONFLICT',
  SESSION_LIMIT: 'PRECONDITION_FAILED',
  INVALID_STATE: 'CONFLICT',
  // A stream resumed from an event its bounded replay buffer no longer holds: retrying cannot help, so it is
  // not a code the SSE link retries (those are 5xx).
  RESUME_EXPIRED: 'PRECONDITION_FAILED',
  // An idempotency key sent again with another input: the first call's result belongs to that first input.
  IDEMPOTENCY_KEY_REUSED: 'UNPROCESSABLE_CONTENT',
  // A person holds control of the session: an API token's change waits until control.released.
  HUMAN_HAS_CONTROL: 'CONFLICT',
  // The session's network settings (or the operator's policy) do not let it reach that host; the message says how.
  EGRESS_DENIED: 'FORBIDDEN',
  // A session named a template (or image) the caller cannot use: none by that name, or another user's.
  TEMPLATE_NOT_FOUND: 'NOT_FOUND',
  // The template has no good build yet (building, or its build failed): the message says which and what to do.
  TEMPLATE_NOT_READY: 'PRECONDITION_FAILED',
  // The template's start command or ready check failed when the session started: the session is not usable.
  TEMPLATE_START_FAILED: 'PRECONDITION_FAILED',
  BACKEND_UNAVAILABLE: 'SERVICE_UNAVAILABLE',
  FILE_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FILE_NOT_TEXT: 'UNPROCESSABLE_CONTENT',
  INPUT_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  LIMIT_EXCEEDED: 'BAD_REQUEST',
  INPUT_INVALID: 'BAD_REQUEST',
  UNSUPPORTED: 'NOT_IMPLEMENTED',
  UNAVAILABLE: 'SERVICE_UNAVAILABLE',
  INTERNAL: 'INTERNAL_SERVER_ERROR',
};

const POLICY_TO_TRPC: Record<PolicyErrorCode, TRPC_ERROR_CODE_KEY> = {
  INPUT_INVALID: 'BAD_REQUEST',
  PATH_EMPTY: 'BAD_REQUEST',
  PATH_ABSOLUTE: 'BAD_REQUEST',
  PATH_TRAVERSAL: 'BAD_REQUEST',
  PATH_ENCODING: 'BAD_REQUEST',
  PATH_CONTROL_CHAR: 'BAD_REQUEST',
  PATH_TOO_LONG: 'BAD_REQUEST',
  SEGMENT_TOO_LONG: 'BAD_REQUEST',
  PATH_BACKSLASH: 'BAD_REQUEST',
  PATH_IS_ROOT: 'BAD_REQUEST',
  PORT_INVALID: 'BAD_REQUEST',
  PORT_OUT_OF_RANGE: 'BAD_REQUEST',
  PORT_BLOCKED: 'BAD_REQUEST',
  HOST_INVALID: 'BAD_REQUEST',
  TOKEN_INVALID: 'UNAUTHORIZED',
  TOKEN_EXPIRED: 'UNAUTHORIZED',
  TOKEN_CLAIMS: 'UNAUTHORIZED',
  // Server misconfiguration: the caller can do nothing about it.
  KEY_INVALID: 'INTERNAL_SERVER_ERROR',
  POLICY_INVALID: 'INTERNAL_SERVER_ERROR',
  CSP_INVALID: 'INTERNAL_SERVER_ERROR',
  SECRET_INVALID: 'BAD_REQUEST',
  TEMPLATE_INVALID: 'BAD_REQUEST',
  RATE_LIMITED: 'TOO_MANY_REQUESTS',
};

const ISOLATION_TO_TRPC: Record<string, TRPC_ERROR_CODE_KEY> = {
  NOT_FOUND: 'NOT_FOUND',
  TIMEOUT: 'TIMEOUT',
  RESOURCE_LIMIT: 'UNPROCESSABLE_CONTENT',
  UNAVAILABLE: 'SERVICE_UNAVAILABLE',
  UNSUPPORTED: 'NOT_IMPLEMENTED',
  INVALID_INPUT: 'BAD_REQUEST',
  ALREADY_EXISTS: 'CONFLICT',
  FORBIDDEN: 'FORBIDDEN',
  INVALID_STATE: 'CONFLICT',
  // The host is out of disk for another workspace: an operator's fix, not the caller's.
  HOST_DISK_FULL: 'SERVICE_UNAVAILABLE',
  // A paused session's saved memory could not be restored: it is stopped with its workspace intact, and
  // sessions.start starts it afresh (the message says so).
  RESTORE_FAILED: 'PRECONDITION_FAILED',
  CANCELLED: 'CLIENT_CLOSED_REQUEST',
  INTERNAL: 'INTERNAL_SERVER_ERROR',
};

// The store's refusals as the API's codes (the same codes and messages the store threw as AppErrors before it
// became @studio/db). The rest are server faults: INTERNAL, message hidden.
const STORE_TO_APP: Record<StoreErrorCode, AppErrorCode> = {
  CONFLICT: 'ALREADY_EXISTS',
  OWNER_INACTIVE: 'UNAUTHENTICATED',
  SESSION_LIMIT: 'SESSION_LIMIT',
  INVALID_INPUT: 'INTERNAL',
  SCHEMA_TOO_NEW: 'INTERNAL',
  UNAVAILABLE: 'UNAVAILABLE',
  QUERY_FAILED: 'INTERNAL',
};

const INTERNAL_MESSAGE = 'internal error; the server log has the details under this request id';
const MAX_MESSAGE = 500;

const clip = (s: string): string => (s.length > MAX_MESSAGE ? `${s.slice(0, MAX_MESSAGE)}…` : s);

function fromZod(error: ZodError): MappedError {
  const issues = error.issues.slice(0, 3);
  const first = issues[0];
  const where = (path: readonly PropertyKey[]) => (path.length > 0 ? `${path.map(String).join('.')}: ` : '');
  const message = clip(issues.map((i) => `${where(i.path)}${i.message}`).join('; ') || 'invalid input');
  const policyCode = (first as { params?: { policyCode?: unknown } } | undefined)?.params?.policyCode;
  if (typeof policyCode === 'string') {
    const trpcCode = POLICY_TO_TRPC[policyCode as PolicyErrorCode] ?? 'BAD_REQUEST';
    return { trpcCode, studioCode: policyCode, message, hidden: false };
  }
  // Size refusals: zod's own too_big, and the policy schemas' custom "larger than" / "longer than" checks.
  // Size refusals: zod's too_big on strings and arrays, and the policy schemas' custom size checks ("larger
  // than", "longer than", "at most N"). A number above its bound (memoryMb, timeoutMs) is LIMIT_EXCEEDED.
  const tooBig = issues.some(
    (i) =>
      (i.code === 'too_big' && (i.origin === 'string' || i.origin === 'array')) ||
      (i.code === 'custom' && /\b(larger|longer) than\b/.test(i.message)) ||
      (i.code === 'custom' && /^at most \d+/.test(i.message)),
  );
  if (tooBig) return { trpcCode: 'PAYLOAD_TOO_LARGE', studioCode: 'INPUT_TOO_LARGE', message, hidden: false };
  if (issues.some((i) => i.code === 'too_big')) {
    return { trpcCode: 'BAD_REQUEST', studioCode: 'LIMIT_EXCEEDED', message, hidden: false };
  }
  return { trpcCode: 'BAD_REQUEST', studioCode: 'INPUT_INVALID', message, hidden: false };
}

function storeUnavailable(): MappedError {
  return {
    trpcCode: 'SERVICE_UNAVAILABLE',
    studioCode: 'UNAVAILABLE',
    message: STORE_UNAVAILABLE_MESSAGE,
    hidden: true,
    retryAfterSeconds: STORE_RETRY_AFTER_SECONDS,
  };
}

/**
 * A coded refusal as the client sees it: its code and message, unless it maps to an internal error, whose
 * message may carry internals (host paths, SQL) and is replaced.
 */
function coded(trpcCode: TRPC_ERROR_CODE_KEY, code: string, message: string): MappedError {
  const hidden = trpcCode === 'INTERNAL_SERVER_ERROR';
  return {
    trpcCode,
    studioCode: hidden ? 'INTERNAL' : code,
    message: hidden ? INTERNAL_MESSAGE : clip(message),
    hidden,
  };
}

/**
 * THE mapping from any failure to what a client sees. Order: our own `AppError`, store refusals (as the
 * `AppError` codes they stand for), policy refusals, zod input errors (a policy code carried in the issue wins),
 * isolation errors, tRPC's own errors, a database driver's connection errors (UNAVAILABLE, retryable, with
 * `retryAfterSeconds`); anything else is INTERNAL with its message hidden. Messages that may carry internals (INTERNAL, UNAVAILABLE from a backend,
 * server misconfiguration) are replaced; the original stays in the server log.
 */
export function mapError(error: unknown): MappedError {
  if (error instanceof TRPCError && error.cause !== undefined && !(error.cause instanceof TRPCError)) {
    // tRPC wraps what procedures throw, and input parsers' errors, in a TRPCError: map the original.
    const inner = mapError(error.cause);
    if (inner.studioCode !== 'INTERNAL' || error.code === 'INTERNAL_SERVER_ERROR') return inner;
  }
  // The driver's message names hosts and ports: logged, not sent.
  if (isStoreError(error, 'UNAVAILABLE')) return storeUnavailable();
  if (error instanceof AppError || isStoreError(error)) {
    const code = error instanceof AppError ? error.code : STORE_TO_APP[error.code];
    const mapped = coded(APP_TO_TRPC[code], code, error.message);
    if (code === 'UNAVAILABLE') {
      mapped.retryAfterSeconds =
        (error instanceof AppError ? error.retryAfterSeconds : undefined) ?? STORE_RETRY_AFTER_SECONDS;
    }
    return mapped;
  }
  if (isPolicyError(error)) {
    return coded(POLICY_TO_TRPC[error.code], error.code, error.message);
  }
  if (error instanceof ZodError) return fromZod(error);
  if (isIsolationError(error)) {
    const trpcCode = ISOLATION_TO_TRPC[error.code] ?? 'INTERNAL_SERVER_ERROR';
    if (error.code === 'UNAVAILABLE') {
      return {
        trpcCode,
        studioCode: 'BACKEND_UNAVAILABLE',
        message: 'the sandbox or its backend is unavailable; retry, or start the session again',
        hidden: true,
      };
    }
    return coded(trpcCode, error.code, error.message);
  }
  if (error instanceof TRPCError) return coded(error.code, error.code, error.message);
  // Last, so an isolation error caused by a reset socket stays an isolation error: a driver's connection error
  // that did not pass through the Store (a raw pg or PGlite error) is the store being down, not a bug.
  if (isStoreUnavailable(error)) return storeUnavailable();
  return {
    trpcCode: 'INTERNAL_SERVER_ERROR',
    studioCode: 'INTERNAL',
    message: INTERNAL_MESSAGE,
    hidden: true,
  };
}

/** Carries a {@link MappedError} on a TRPCError so the error formatter can publish `data.studioCode`. */
export class MappedCause extends Error {
  override readonly name = 'MappedCause';
  readonly mapped: MappedError;
  readonly original: unknown;
  constructor(mapped: MappedError, original: unknown) {
    super(mapped.message);
    this.mapped = mapped;
    this.original = original;
  }
}

/** Converts any failure to the TRPCError the client receives. */
export function toTRPCError(error: unknown): TRPCError {
  if (error instanceof TRPCError && error.cause instanceof MappedCause) return error;
  const mapped = mapError(error);
  return new TRPCError({
    code: mapped.trpcCode,
    message: mapped.message,
    cause: new MappedCause(mapped, error),
  });
}
