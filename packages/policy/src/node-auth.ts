import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { PolicyError } from './errors.ts';
import { findControlChar, hasLoneSurrogate } from './lib/text.ts';
import { viaPolicy } from './lib/via-policy.ts';

// Issue 23: an API replica forwards a person's session call to the node service that owns the session. The node
// service trusts the principal the API names, so every forwarded request carries an HMAC over the whole request
// under a cluster secret (a Swarm secret file, read by the app and handed here as bytes).

/** The header a forwarded request carries the signature in. */
export const NODE_AUTH_HEADER = 'x-studio-node-auth';

/** Shortest cluster secret accepted, in bytes: the size of the HMAC-SHA256 output (RFC 2104 §3). */
export const MIN_NODE_SECRET_BYTES = 32;

/** Default clock skew {@link verifyNodeRequest} tolerates either way: 30 s. */
export const DEFAULT_NODE_AUTH_MAX_SKEW_MS = 30_000;

/** SHA-256 of the empty body, the `bodySha256` of a request without one. */
export const EMPTY_BODY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** Longest `principal` (opaque JSON) a signature may cover, in characters. */
export const MAX_NODE_PRINCIPAL_LENGTH = 8192;

/** Longest `path` (with its query) a signature may cover, in characters. */
export const MAX_NODE_PATH_LENGTH = 8192;

const MAX_SECRET_BYTES = 4096;
const VERSION = 'v1';
// Domain separation: a MAC made here can never be mistaken for one over another message with the same secret.
const CONTEXT = 'studio-node-request';
const METHOD = /^[A-Z]{1,16}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const NONCE = /^[A-Za-z0-9_-]{16,128}$/;
// `v1.<at>.<nonce>.<mac>`: at is a canonical decimal (no sign, no leading zeros), the MAC 32 bytes of base64url.
const HEADER = /^v1\.(0|[1-9][0-9]{0,15})\.([A-Za-z0-9_-]{16,128})\.([A-Za-z0-9_-]{43})$/;
const MAX_HEADER_LENGTH = 3 + 17 + 129 + 43;

const HOW_TO_MAKE =
  'make one with: openssl rand -base64 48 | docker secret create studio_node_secret - (and give the file to every API replica and node service)';

/**
 * Checks the cluster secret and returns it. Security meaning: it must be a Uint8Array of at least
 * {@link MIN_NODE_SECRET_BYTES} bytes (at most 4096) and not one repeated byte (an unset, zero-filled buffer);
 * otherwise PolicyError KEY_INVALID, whose message says how to make a good one. Both sides call it, so a short
 * secret fails at start-up rather than leaving node services open to guessing.
 */
export function checkNodeSecret(secret: unknown): Uint8Array {
  if (!(secret instanceof Uint8Array)) {
    throw new PolicyError(
      'KEY_INVALID',
      `the node secret must be bytes (read the secret file); ${HOW_TO_MAKE}`,
    );
  }
  if (secret.byteLength < MIN_NODE_SECRET_BYTES || secret.byteLength > MAX_SECRET_BYTES) {
    throw new PolicyError(
      'KEY_INVALID',
      `the node secret must be ${MIN_NODE_SECRET_BYTES}-${MAX_SECRET_BYTES} bytes, this one is ${secret.byteLength}; ${HOW_TO_MAKE}`,
    );
  }
  if (secret.every((b) => b === secret[0])) {
    throw new PolicyError(
      'KEY_INVALID',
      `the node secret is one repeated byte, not a random secret; ${HOW_TO_MAKE}`,
    );
  }
  return secret;
}

/**
 * The cluster secret as a schema ({@link checkNodeSecret}): bytes in, the same bytes out. Security meaning: a
 * refusal is a zod issue with `params.policyCode` 'KEY_INVALID' and the message naming how to make a secret.
 */
export const nodeSecretSchema = z
  .custom<Uint8Array>()
  .transform(viaPolicy((value: Uint8Array) => checkNodeSecret(value)));

/** What a forwarded request asserts; every field is covered by the MAC. */
export interface NodeRequestClaims {
  /** The HTTP method, upper case (`GET`, `POST`). */
  readonly method: string;
  /** The path with its query string exactly as sent (`/sessions/ses_…/files?path=src`). */
  readonly path: string;
  /** Lower-case hex SHA-256 of the exact body bytes; {@link EMPTY_BODY_SHA256} for none. */
  readonly bodySha256: string;
  /** Who the API acts for: opaque JSON the node trusts once the signature verifies. */
  readonly principal: string;
  /** When the API signed, ms since the epoch. */
  readonly at: number;
  /** A random value unique to this request (16-128 base64url characters), for the node's replay cache. */
  readonly nonce: string;
}

/** The claims {@link verifyNodeRequest} compares with the header: what the node itself saw in the request. */
export type NodeRequestExpectation = Omit<NodeRequestClaims, 'at' | 'nonce'>;

/** Options for {@link verifyNodeRequest}. */
export interface VerifyNodeRequestOptions {
  /** The node's clock, ms since the epoch. */
  readonly now: number;
  /** Largest difference allowed between `at` and `now`, either way; default {@link DEFAULT_NODE_AUTH_MAX_SKEW_MS}. */
  readonly maxSkewMs?: number;
}

/** Why {@link verifyNodeRequest} refused a header. */
export const NODE_AUTH_REFUSAL_REASONS = Object.freeze([
  'malformed',
  'expired',
  'future',
  'mismatch',
] as const);

/** One of {@link NODE_AUTH_REFUSAL_REASONS}. */
export type NodeAuthRefusalReason = (typeof NODE_AUTH_REFUSAL_REASONS)[number];

/** What {@link verifyNodeRequest} decided. */
export type NodeAuthResult =
  | { readonly ok: true; readonly at: number; readonly nonce: string }
  | { readonly ok: false; readonly reason: NodeAuthRefusalReason };

const isText = (value: unknown, max: number): value is string =>
  typeof value === 'string' && value.length <= max && !hasLoneSurrogate(value);

// A path as the node sees it on the wire: starts with '/', no whitespace or control characters (a URL on the
// request line cannot hold them), so the API and the node cannot disagree about where it ends.
const isPath = (value: unknown): value is string =>
  isText(value, MAX_NODE_PATH_LENGTH) &&
  value.startsWith('/') &&
  !value.includes(' ') &&
  findControlChar(value) === -1;

// Returns the problem with the claims, or null. Shared by both sides, so whatever can be signed can be verified.
function claimsProblem(claims: NodeRequestExpectation): string | null {
  if (typeof claims !== 'object' || claims === null) return 'claims must be an object';
  if (typeof claims.method !== 'string' || !METHOD.test(claims.method))
    return 'method must be upper case (GET)';
  if (!isPath(claims.path)) {
    return `path must start with / and be at most ${MAX_NODE_PATH_LENGTH} characters without spaces or control characters`;
  }
  if (typeof claims.bodySha256 !== 'string' || !SHA256_HEX.test(claims.bodySha256)) {
    return 'bodySha256 must be 64 lower-case hex digits (EMPTY_BODY_SHA256 for no body)';
  }
  if (!isText(claims.principal, MAX_NODE_PRINCIPAL_LENGTH) || claims.principal.length === 0) {
    return `principal must be 1-${MAX_NODE_PRINCIPAL_LENGTH} characters of well-formed text`;
  }
  return null;
}

// JSON of a fixed-length array of strings and one integer: unambiguous (every string is quoted and escaped, so
// no field can run into the next), and deterministic in every JavaScript engine.
function mac(secret: Uint8Array, claims: NodeRequestClaims): string {
  const message = JSON.stringify([
    CONTEXT,
    VERSION,
    claims.method,
    claims.path,
    claims.bodySha256,
    claims.principal,
    claims.at,
    claims.nonce,
  ]);
  return createHmac('sha256', secret).update(message, 'utf8').digest('base64url');
}

/**
 * Signs a request an API replica forwards to a node service; returns the value of {@link NODE_AUTH_HEADER},
 * `v1.<at>.<nonce>.<base64url HMAC-SHA256>`.
 *
 * Security meaning: the MAC covers, under a domain-separation label and version, the method, the path with its
 * query, the SHA-256 of the exact body, the principal, the time and the nonce, encoded as a JSON array so no two
 * claim sets share a message. So a captured header is good only for that one request, that body, that person,
 * within the skew window. The secret is checked ({@link checkNodeSecret}: KEY_INVALID) and malformed claims are
 * refused (INPUT_INVALID), never signed. The nonce must be fresh random (16+ base64url characters, e.g.
 * `randomBytes(16).toString('base64url')`); the caller supplies it and the clock so this stays pure.
 */
export function signNodeRequest(secret: Uint8Array, claims: NodeRequestClaims): string {
  const key = checkNodeSecret(secret);
  const problem = claimsProblem(claims);
  if (problem !== null) throw new PolicyError('INPUT_INVALID', `node request ${problem}`);
  if (!Number.isSafeInteger(claims.at) || claims.at < 0) {
    throw new PolicyError('INPUT_INVALID', 'node request at must be a time in ms since the epoch');
  }
  if (typeof claims.nonce !== 'string' || !NONCE.test(claims.nonce)) {
    throw new PolicyError(
      'INPUT_INVALID',
      'node request nonce must be 16-128 base64url characters of fresh random',
    );
  }
  return `${VERSION}.${claims.at}.${claims.nonce}.${mac(key, claims)}`;
}

/**
 * Verifies a forwarded request's {@link NODE_AUTH_HEADER} against what the node itself saw: the method, path
 * with query, SHA-256 of the body it read, and the principal the request names.
 *
 * Security meaning: anything but `v1.<at>.<nonce>.<43 base64url>` (at most ~200 characters, checked before any
 * work) is `malformed`; `at` more than `maxSkewMs` (default 30 s) behind `now` is `expired`, ahead of it is
 * `future`; otherwise the MAC is recomputed and compared in constant time, and any difference (another secret,
 * any claim changed, claims that could never have been signed) is `mismatch`. It never throws for anything in
 * the request: only a bad secret (KEY_INVALID) or options (INPUT_INVALID), which are the caller's configuration.
 * It cannot see replays: within the window the same header verifies again, so the caller must keep the `nonce`
 * of every accepted request for `2 × maxSkewMs` and refuse one it has seen.
 */
export function verifyNodeRequest(
  secret: Uint8Array,
  header: string,
  expected: NodeRequestExpectation,
  options: VerifyNodeRequestOptions,
): NodeAuthResult {
  const key = checkNodeSecret(secret);
  const now = options?.now;
  const maxSkewMs = options?.maxSkewMs ?? DEFAULT_NODE_AUTH_MAX_SKEW_MS;
  if (!Number.isSafeInteger(now) || (now as number) < 0) {
    throw new PolicyError('INPUT_INVALID', 'now must be a time in ms since the epoch');
  }
  if (!Number.isSafeInteger(maxSkewMs) || maxSkewMs < 0) {
    throw new PolicyError('INPUT_INVALID', 'maxSkewMs must be a whole number of ms, 0 or more');
  }
  if (typeof header !== 'string' || header.length > MAX_HEADER_LENGTH)
    return { ok: false, reason: 'malformed' };
  const match = HEADER.exec(header);
  if (match === null) return { ok: false, reason: 'malformed' };
  const [, atText, nonce, given] = match as unknown as [string, string, string, string];
  const at = Number(atText);
  if (!Number.isSafeInteger(at)) return { ok: false, reason: 'malformed' };
  // The clock first: it is free, and an old or early header is refused without touching the secret.
  if (at < (now as number) - maxSkewMs) return { ok: false, reason: 'expired' };
  if (at > (now as number) + maxSkewMs) return { ok: false, reason: 'future' };
  if (claimsProblem(expected) !== null) return { ok: false, reason: 'mismatch' };
  const wanted = mac(key, { ...expected, at, nonce });
  // Both are 43 ASCII characters (the header pattern fixes the length), so the compare never short-circuits.
  const same = timingSafeEqual(Buffer.from(given, 'latin1'), Buffer.from(wanted, 'latin1'));
  return same ? { ok: true, at, nonce } : { ok: false, reason: 'mismatch' };
}
