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
  const signature = query.get('signature') ?? '';
  const rawExpiration = query.get('signature_expiration');
  let expiration: number | null = null;
  if (rawExpiration !== null && rawExpiration !== '') {
    if (!/^\d{1,15}$/.test(rawExpiration)) {
      throw new EnvdError('UNAUTHENTICATED', 'signature_expiration must be Unix seconds');
    }
    expiration = Number(rawExpiration);
  }
  const expected = fileSignature({
    path: query.get('path') ?? '',
    operation,
    username: query.get('username') ?? '',
    accessToken,
    expiration,
  });
  if (!timingSafeEqual(digest(signature), digest(expected))) {
    throw new EnvdError(
      'UNAUTHENTICATED',
      `the signature is not valid for ${operation} of this path and user`,
    );
  }
  if (expiration !== null && expiration * 1000 < nowMs) {
    throw new EnvdError('UNAUTHENTICATED', 'the signed URL has expired; ask for a new one');
  }
}
