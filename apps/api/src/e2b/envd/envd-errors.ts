import { Code, ConnectError } from '@connectrpc/connect';
import { mapError } from '../../core/errors.ts';

/** Refusals the envd layer makes itself, named as what the E2B SDK turns them into. */
export const ENVD_ERROR_CODES = [
  'UNAUTHENTICATED',
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'FAILED_PRECONDITION',
  'RESOURCE_EXHAUSTED',
  'PAYLOAD_TOO_LARGE',
  'UNIMPLEMENTED',
] as const;

export type EnvdErrorCode = (typeof ENVD_ERROR_CODES)[number];

/** A refusal of an envd call, with a message that says what to do. */
export class EnvdError extends Error {
  override readonly name = 'EnvdError';
  readonly code: EnvdErrorCode;
  constructor(code: EnvdErrorCode, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
  }
}

/** What the client sees of a failure: the Connect code (RPCs), the HTTP status (/files) and a safe message. */
export interface EnvdFailure {
  code: Code;
  status: number;
  message: string;
  /** The message was replaced because the original may hold internals; log the original. */
  hidden: boolean;
}

const OWN: Record<EnvdErrorCode, [Code, number]> = {
  UNAUTHENTICATED: [Code.Unauthenticated, 401],
  INVALID_ARGUMENT: [Code.InvalidArgument, 400],
  NOT_FOUND: [Code.NotFound, 404],
  ALREADY_EXISTS: [Code.AlreadyExists, 409],
  FAILED_PRECONDITION: [Code.FailedPrecondition, 409],
  RESOURCE_EXHAUSTED: [Code.ResourceExhausted, 429],
  PAYLOAD_TOO_LARGE: [Code.ResourceExhausted, 413],
  UNIMPLEMENTED: [Code.Unimplemented, 501],
};

// Studio's codes (AppError, policy, isolation, as core/errors.ts's mapError names them) in the SDK's terms. The
// SDK turns NotFound/404 into NotFoundError (FileNotFoundError for files), InvalidArgument/400 into
// InvalidArgumentError, Unauthenticated/401 into AuthenticationError, DeadlineExceeded into TimeoutError, 507 into
// NotEnoughSpaceError and anything it has no class for into a SandboxError that keeps the message.
const STUDIO: Record<string, [Code, number]> = {
  UNAUTHENTICATED: [Code.Unauthenticated, 401],
  INVALID_CREDENTIALS: [Code.Unauthenticated, 401],
  TOKEN_REVOKED: [Code.Unauthenticated, 401],
  TOKEN_INVALID: [Code.Unauthenticated, 401],
  TOKEN_EXPIRED: [Code.Unauthenticated, 401],
  TOKEN_CLAIMS: [Code.Unauthenticated, 401],
  FORBIDDEN: [Code.PermissionDenied, 403],
  ORIGIN_REFUSED: [Code.PermissionDenied, 403],
  EGRESS_DENIED: [Code.PermissionDenied, 403],
  NOT_FOUND: [Code.NotFound, 404],
  TEMPLATE_NOT_FOUND: [Code.NotFound, 404],
  ALREADY_EXISTS: [Code.AlreadyExists, 409],
  // A person holds control of the session: the SDK shows a SandboxError carrying this message.
  HUMAN_HAS_CONTROL: [Code.FailedPrecondition, 409],
  INVALID_STATE: [Code.FailedPrecondition, 409],
  SESSION_LIMIT: [Code.FailedPrecondition, 409],
  RESUME_EXPIRED: [Code.FailedPrecondition, 409],
  RESTORE_FAILED: [Code.FailedPrecondition, 409],
  TEMPLATE_NOT_READY: [Code.FailedPrecondition, 409],
  TEMPLATE_START_FAILED: [Code.FailedPrecondition, 409],
  IDEMPOTENCY_KEY_REUSED: [Code.InvalidArgument, 400],
  INPUT_INVALID: [Code.InvalidArgument, 400],
  INVALID_INPUT: [Code.InvalidArgument, 400],
  LIMIT_EXCEEDED: [Code.InvalidArgument, 400],
  FILE_NOT_TEXT: [Code.InvalidArgument, 400],
  FILE_TOO_LARGE: [Code.ResourceExhausted, 413],
  INPUT_TOO_LARGE: [Code.ResourceExhausted, 413],
  RATE_LIMITED: [Code.ResourceExhausted, 429],
  // The workspace quota (or another sandbox limit) was hit: over HTTP, 507 is the SDK's NotEnoughSpaceError.
  RESOURCE_LIMIT: [Code.ResourceExhausted, 507],
  HOST_DISK_FULL: [Code.ResourceExhausted, 507],
  TIMEOUT: [Code.DeadlineExceeded, 504],
  CANCELLED: [Code.Canceled, 499],
  UNSUPPORTED: [Code.Unimplemented, 501],
  BACKEND_UNAVAILABLE: [Code.Unavailable, 503],
  UNAVAILABLE: [Code.Unavailable, 503],
};

/**
 * THE mapping of any failure in an envd call to what the E2B SDK receives. Our own {@link EnvdError}s and
 * ConnectErrors keep their code; everything else goes through the API's {@link mapError} (which hides messages
 * that may carry internals) and its Studio code is translated here. Never a stack trace.
 */
export function toEnvdFailure(error: unknown): EnvdFailure {
  if (error instanceof EnvdError) {
    const [code, status] = OWN[error.code];
    return { code, status, message: error.message, hidden: false };
  }
  if (error instanceof ConnectError) {
    return { code: error.code, status: 500, message: error.rawMessage, hidden: false };
  }
  const mapped = mapError(error);
  const known = STUDIO[mapped.studioCode];
  if (known === undefined || mapped.hidden) {
    // Hidden messages (internals) keep their code when it is not a server fault, e.g. a backend that is down.
    const [code, status] = known ?? [Code.Internal, 500];
    return { code, status, message: mapped.message, hidden: true };
  }
  return { code: known[0], status: known[1], message: mapped.message, hidden: false };
}

/** A failure as the ConnectError an RPC ends with. */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  const failure = toEnvdFailure(error);
  return new ConnectError(failure.message, failure.code);
}
