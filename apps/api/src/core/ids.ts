import { createHash, randomBytes } from 'node:crypto';

/** A random id: `prefix` + 22 URL-safe characters (128 bits). Session ids use `ses_`, as the policy requires. */
export function newId(prefix: 'ses_' | 'usr_' | 'tok_' | 'req_' | 'exe_' | 'wat_'): string {
  return `${prefix}${randomBytes(16).toString('base64url')}`;
}

/** The prefix of every API token, so scanners and the auth layer recognise one without parsing. */
export const API_TOKEN_PREFIX = 'sst_';

/** A new API token secret: `sst_` + 43 URL-safe characters (256 bits). Shown once, stored only as its hash. */
export function newApiToken(): string {
  return `${API_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
}

/** The stored form of an API token: SHA-256, hex. Fine for 256-bit random secrets (no dictionary to try). */
export function hashApiToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}
