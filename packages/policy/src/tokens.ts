import { type JWTPayload, jwtVerify, SignJWT } from 'jose';
import { PolicyError } from './errors.ts';
import { findControlChar } from './lib/text.ts';
import { MAX_TOKEN_LENGTH } from './limits.ts';
import { isCanonicalWorkspacePath } from './paths.ts';
import { sessionIdSchema, userIdSchema } from './schemas.ts';

/** The one signing algorithm. Security meaning: pinned, so `alg: none` and key-confusion (RS256 header) fail. */
export const TOKEN_ALGORITHM = 'HS256';
/** Default `iss` of every Studio token. */
export const TOKEN_ISSUER = 'claude-studio';
/** Default `aud`: tokens for the API and its WebSockets. */
export const API_TOKEN_AUDIENCE = 'claude-studio-api';
/**
 * `aud` for tokens handed to the preview origin. Security meaning: a preview page can read its own token, so it
 * must not be accepted by the API; sign and verify preview tokens with `{ audience: PREVIEW_TOKEN_AUDIENCE }`.
 */
export const PREVIEW_TOKEN_AUDIENCE = 'claude-studio-preview';
/** The longest lifetime a token may have: 4 hours (SECURITY.md §4). */
export const MAX_TOKEN_LIFETIME_MS = 4 * 60 * 60 * 1000;
/** Lifetime when the signer gives none: 1 hour. */
export const DEFAULT_TOKEN_LIFETIME_MS = 60 * 60 * 1000;
/** Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds. */
export const TOKEN_CLOCK_TOLERANCE_S = 30;
/** Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size). */
export const MIN_TOKEN_KEY_BYTES = 32;

const MAX_KEY_BYTES = 1024;
const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** What a session token asserts. */
export interface SessionTokenClaims {
  /** The user the token was issued to; becomes `sub`. */
  readonly userId: string;
  /** The one session it grants access to (`ses_…`). */
  readonly sessionId: string;
  /** The project folder inside that session's workspace, canonical workspace-relative ('' = the root). */
  readonly projectPath: string;
}

/** A verified session token: the claims plus `iat` and `exp` in seconds since the epoch. */
export interface SessionToken extends SessionTokenClaims {
  readonly iat: number;
  readonly exp: number;
}

/** Options for {@link signSessionToken}. */
export interface SignSessionTokenOptions {
  /** `iss`; default {@link TOKEN_ISSUER}. */
  readonly issuer?: string;
  /** `aud`; default {@link API_TOKEN_AUDIENCE}. */
  readonly audience?: string;
  /** Lifetime in ms, 1 s..4 h; default 1 h. Longer is refused, not shortened. */
  readonly lifetimeMs?: number;
  /** The clock; default the current time. */
  readonly now?: Date;
}

/** Options for {@link verifySessionToken}. */
export interface VerifySessionTokenOptions {
  /** Expected `iss`; default {@link TOKEN_ISSUER}. */
  readonly issuer?: string;
  /** Expected `aud`; default {@link API_TOKEN_AUDIENCE}. */
  readonly audience?: string;
  /** The clock; default the current time. */
  readonly now?: Date;
}

function checkKey(key: unknown): Uint8Array {
  if (!(key instanceof Uint8Array)) {
    throw new PolicyError(
      'KEY_INVALID',
      `token key must be a Uint8Array of at least ${MIN_TOKEN_KEY_BYTES} random bytes (decode the configured secret first)`,
    );
  }
  if (key.byteLength < MIN_TOKEN_KEY_BYTES || key.byteLength > MAX_KEY_BYTES) {
    throw new PolicyError(
      'KEY_INVALID',
      `token key must be ${MIN_TOKEN_KEY_BYTES}-${MAX_KEY_BYTES} bytes; generate at least ${MIN_TOKEN_KEY_BYTES} random bytes`,
    );
  }
  // A key of one repeated byte is an unset secret (Buffer.alloc(32)), not a random one.
  if (key.every((b) => b === key[0])) {
    throw new PolicyError('KEY_INVALID', 'token key is a single repeated byte; configure a random secret');
  }
  return key;
}

function checkName(value: unknown, what: string): string {
  if (
    typeof value !== 'string' ||
    value.length === 0 ||
    value.length > 256 ||
    findControlChar(value) !== -1
  ) {
    throw new PolicyError(
      'INPUT_INVALID',
      `${what} must be a 1-256 character string without control characters`,
    );
  }
  return value;
}

function checkNow(now: unknown): Date {
  if (now === undefined) return new Date();
  if (!(now instanceof Date) || !Number.isFinite(now.getTime())) {
    throw new PolicyError('INPUT_INVALID', 'now must be a valid Date');
  }
  return now;
}

function claimsError(message: string): PolicyError {
  return new PolicyError('TOKEN_CLAIMS', message);
}

function checkClaims(claims: { userId: unknown; sessionId: unknown; projectPath: unknown }): void {
  if (!userIdSchema.safeParse(claims.userId).success)
    throw claimsError('userId must be 1-128 of A-Z a-z 0-9 _ -');
  if (!sessionIdSchema.safeParse(claims.sessionId).success) throw claimsError('sessionId must be a ses_ id');
  if (typeof claims.projectPath !== 'string' || !isCanonicalWorkspacePath(claims.projectPath)) {
    throw claimsError(
      "projectPath must be a canonical workspace-relative path (as resolveWorkspacePath returns; '' for the root)",
    );
  }
}

/**
 * Signs a session token: HS256 JWT with `sub` = userId, `sid` = sessionId, `projectPath`, `iss`, `aud`, `iat`
 * and `exp`, header `{ alg: 'HS256', typ: 'JWT' }`.
 *
 * Security meaning: the key must be 32-1024 bytes (KEY_INVALID otherwise); claims are validated before
 * signing (TOKEN_CLAIMS), so a token can never carry an absolute or '..' project path; the lifetime is capped
 * at 4 h and a longer request is refused (TOKEN_CLAIMS) rather than silently shortened. The token never
 * exceeds {@link MAX_TOKEN_LENGTH}, so whatever is signed here can be verified.
 */
export async function signSessionToken(
  claims: SessionTokenClaims,
  key: Uint8Array,
  options: SignSessionTokenOptions = {},
): Promise<string> {
  const secret = checkKey(key);
  if (typeof claims !== 'object' || claims === null) throw claimsError('claims must be an object');
  checkClaims(claims);
  const issuer = checkName(options.issuer ?? TOKEN_ISSUER, 'issuer');
  const audience = checkName(options.audience ?? API_TOKEN_AUDIENCE, 'audience');
  const lifetimeMs = options.lifetimeMs ?? DEFAULT_TOKEN_LIFETIME_MS;
  if (!Number.isSafeInteger(lifetimeMs) || lifetimeMs < 1000 || lifetimeMs > MAX_TOKEN_LIFETIME_MS) {
    throw claimsError(`lifetimeMs must be an integer from 1000 to ${MAX_TOKEN_LIFETIME_MS} (4 h)`);
  }
  const iat = Math.floor(checkNow(options.now).getTime() / 1000);
  const exp = iat + Math.floor(lifetimeMs / 1000);
  const token = await new SignJWT({ sid: claims.sessionId, projectPath: claims.projectPath })
    .setProtectedHeader({ alg: TOKEN_ALGORITHM, typ: 'JWT' })
    .setSubject(claims.userId)
    .setIssuer(issuer)
    .setAudience(audience)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(secret);
  if (token.length > MAX_TOKEN_LENGTH) {
    throw claimsError(`token would be longer than ${MAX_TOKEN_LENGTH} characters; use a shorter projectPath`);
  }
  return token;
}

function fromJose(error: unknown): PolicyError {
  const code = (error as { code?: unknown } | null)?.code;
  const claim = (error as { claim?: unknown } | null)?.claim;
  if (code === 'ERR_JWT_EXPIRED') {
    return new PolicyError('TOKEN_EXPIRED', 'token has expired or is too old; sign in again', {
      cause: error,
    });
  }
  if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && claim !== 'typ') {
    const name = typeof claim === 'string' ? claim : 'a';
    return new PolicyError('TOKEN_CLAIMS', `token's "${name}" claim is missing or not accepted here`, {
      cause: error,
    });
  }
  return new PolicyError('TOKEN_INVALID', 'token is malformed, not HS256, or its signature does not verify', {
    cause: error,
  });
}

/**
 * Verifies a session token and returns its claims, or throws.
 *
 * Security meaning (SECURITY.md §4): before any parsing, a non-string or a token over {@link MAX_TOKEN_LENGTH}
 * characters or not of the `x.y.z` compact form is TOKEN_INVALID (so a megabyte token, `alg: none` with an
 * empty signature, or a JWE costs nothing). Then jose verifies with the algorithm pinned to HS256 (`none` in any
 * spelling, HS384/HS512 and RS256 headers are TOKEN_INVALID, as are tampered headers, payloads and signatures and
 * tokens made with another key). `exp`, `iat` and `sub` are required; issuer and audience must match (default
 * {@link TOKEN_ISSUER} / {@link API_TOKEN_AUDIENCE}, and `aud` must be that single string, not a list); `iat`
 * may not be in the future nor older than 4 h, `nbf` may not be in the future, with
 * {@link TOKEN_CLOCK_TOLERANCE_S} s of tolerance. Expired or too old → TOKEN_EXPIRED; a missing or wrong claim
 * → TOKEN_CLAIMS; a token whose `exp - iat` exceeds 4 h, or whose ids or project path are malformed, is
 * TOKEN_CLAIMS too. jose's error is kept as `cause`.
 */
export async function verifySessionToken(
  token: string,
  key: Uint8Array,
  options: VerifySessionTokenOptions = {},
): Promise<SessionToken> {
  if (typeof token !== 'string') throw new PolicyError('TOKEN_INVALID', 'token must be a string');
  if (token.length > MAX_TOKEN_LENGTH) {
    throw new PolicyError(
      'TOKEN_INVALID',
      `token is longer than ${MAX_TOKEN_LENGTH} characters; refused unparsed`,
    );
  }
  if (!JWS_COMPACT.test(token)) {
    throw new PolicyError('TOKEN_INVALID', 'token is not a signed compact JWT (header.payload.signature)');
  }
  const secret = checkKey(key);
  const issuer = checkName(options.issuer ?? TOKEN_ISSUER, 'issuer');
  const audience = checkName(options.audience ?? API_TOKEN_AUDIENCE, 'audience');
  const now = checkNow(options.now);
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, secret, {
      algorithms: [TOKEN_ALGORITHM],
      typ: 'JWT',
      issuer,
      audience,
      maxTokenAge: MAX_TOKEN_LIFETIME_MS / 1000,
      clockTolerance: TOKEN_CLOCK_TOLERANCE_S,
      currentDate: now,
      requiredClaims: ['exp', 'iat', 'sub'],
    }));
  } catch (error) {
    throw fromJose(error);
  }
  const { sub, sid, projectPath, iat, exp, aud } = payload as JWTPayload & {
    sid?: unknown;
    projectPath?: unknown;
  };
  if (aud !== audience) throw claimsError('token "aud" must be exactly one audience');
  if (!Number.isSafeInteger(iat) || !Number.isSafeInteger(exp)) {
    throw claimsError('token "iat" and "exp" must be integers');
  }
  const iatS = iat as number;
  const expS = exp as number;
  if (expS <= iatS || (expS - iatS) * 1000 > MAX_TOKEN_LIFETIME_MS) {
    throw claimsError('token lifetime (exp - iat) must be positive and at most 4 h');
  }
  checkClaims({ userId: sub, sessionId: sid, projectPath });
  return {
    userId: sub as string,
    sessionId: sid as string,
    projectPath: projectPath as string,
    iat: iatS,
    exp: expS,
  };
}
