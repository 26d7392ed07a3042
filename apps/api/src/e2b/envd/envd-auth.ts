import { createHash, timingSafeEqual } from 'node:crypto';
import { EnvdError } from './envd-errors.ts';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Whether `given` is the sandbox's access token, compared in constant time (hashes make the lengths equal). */
export function tokenMatches(given: string | null | undefined, expected: string): boolean {
  if (typeof given !== 'string' || expected.length === 0) return false;
  return timingSafeEqual(digest(given), digest(expected));
}

/**
 * The E2B SDK's file-URL signature: `v1_` + standard base64 (not base64url) of
 * sha256(`path:operation:username:token[:expiration]`) without `=` padding, where `path` and `username` are the
 * query's values as sent ('' when absent).
 */
export function fileSignature(options: {
  path: string;
  operation: 'read' | 'write';
  username: string;
  accessToken: string;
  expiration: number | null;
}): string {
  const raw =
    options.expiration === null
      ? `${options.path}:${options.operation}:${options.username}:${options.accessToken}`
      : `${options.path}:${options.operation}:${options.username}:${options.accessToken}:${options.expiration}`;
  return `v1_${digest(raw).toString('base64').replace(/=+$/, '')}`;
}

/** What a signed `/files` URL's query says: its signature and its expiration (null: none, or not Unix seconds). */
function signedQuery(query: URLSearchParams): {
  signature: string;
  expiration: number | null;
  valid: boolean;
} {
  const rawExpiration = query.get('signature_expiration');
  const present = rawExpiration !== null && rawExpiration !== '';
  const valid = !present || /^\d{1,15}$/.test(rawExpiration);
  return {
    signature: query.get('signature') ?? '',
    expiration: present && valid ? Number(rawExpiration) : null,
    valid,
  };
}

/**
 * Whether a signed `/files` URL's signature was made with `accessToken` for `operation` (expiry not checked):
 * how the API root's `/files` finds the sandbox a URL under a fixed E2B_SANDBOX_URL belongs to.
 */
export function fileSignatureMatches(
  query: URLSearchParams,
  operation: 'read' | 'write',
  accessToken: string,
): boolean {
  const { signature, expiration, valid } = signedQuery(query);
  if (!valid) return false;
  const expected = fileSignature({
    path: query.get('path') ?? '',
    operation,
    username: query.get('username') ?? '',
    accessToken,
    expiration,
  });
  return tokenMatches(signature, expected);
}

/**
 * Checks a signed `/files` URL (`signature`, optional `signature_expiration` in Unix seconds) for `operation`.
 * Throws UNAUTHENTICATED when it is wrong or expired.
 */
export function checkFileSignature(
  query: URLSearchParams,
  operation: 'read' | 'write',
  accessToken: string,
  nowMs: number,
): void {
  const { expiration, valid } = signedQuery(query);
  if (!valid) throw new EnvdError('UNAUTHENTICATED', 'signature_expiration must be Unix seconds');
  if (!fileSignatureMatches(query, operation, accessToken)) {
    throw new EnvdError(
      'UNAUTHENTICATED',
      `the signature is not valid for ${operation} of this path and user`,
    );
  }
  if (expiration !== null && expiration * 1000 < nowMs) {
    throw new EnvdError('UNAUTHENTICATED', 'the signed URL has expired; ask for a new one');
  }
}
