/**
 * Every refusal this package can make, as a closed list. Callers branch on these codes (the API maps them
 * to tRPC codes in one place), so adding one is a breaking change on purpose.
 */
export const POLICY_ERROR_CODES = Object.freeze([
  'INPUT_INVALID',
  'PATH_EMPTY',
  'PATH_ABSOLUTE',
  'PATH_TRAVERSAL',
  'PATH_ENCODING',
  'PATH_CONTROL_CHAR',
  'PATH_TOO_LONG',
  'SEGMENT_TOO_LONG',
  'PATH_BACKSLASH',
  'PATH_IS_ROOT',
  'PORT_INVALID',
  'PORT_OUT_OF_RANGE',
  'PORT_BLOCKED',
  'HOST_INVALID',
  'TOKEN_INVALID',
  'TOKEN_EXPIRED',
  'TOKEN_CLAIMS',
  'KEY_INVALID',
  'POLICY_INVALID',
  'RATE_LIMITED',
  'CSP_INVALID',
  'SECRET_INVALID',
  'TEMPLATE_INVALID',
] as const);

/** The code of a {@link PolicyError}: which rule refused the input. */
export type PolicyErrorCode = (typeof POLICY_ERROR_CODES)[number];

const CODE_SET: ReadonlySet<string> = new Set(POLICY_ERROR_CODES);

/** Options for {@link PolicyError}; `cause` keeps the underlying library error (zod, jose) for logs. */
export interface PolicyErrorOptions {
  readonly cause?: unknown;
}

/**
 * The single error type of `@studio/policy`: an input was refused by a security rule.
 *
 * Security meaning: a `PolicyError` always means "do not proceed"; no function in this package returns a
 * partially-validated value alongside one. The message says what the caller must change and never echoes
 * secrets (token contents, keys). Check it with {@link isPolicyError} and branch on `code`.
 */
export class PolicyError extends Error {
  override readonly name = 'PolicyError';
  /** Which rule refused the input. */
  readonly code: PolicyErrorCode;

  constructor(code: PolicyErrorCode, message: string, options?: PolicyErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/**
 * True when `e` is a policy refusal. Checks by `code` (not only `instanceof`) so an error that crossed a
 * module boundary or was produced by another copy of this package is still recognised; an unknown code is
 * not a policy error, so callers never treat a foreign error as a known refusal.
 */
export function isPolicyError(e: unknown): e is PolicyError {
  if (!(e instanceof Error) || e.name !== 'PolicyError') return false;
  const code: unknown = (e as { code?: unknown }).code;
  return typeof code === 'string' && CODE_SET.has(code);
}
