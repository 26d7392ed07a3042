import type { AppRouter } from '@studio/client';
import type { inferRouterOutputs } from '@trpc/server';
import { formatAge } from './file-types';

type Outputs = inferRouterOutputs<AppRouter>;

/** An API token as `tokens.list` shows it (never its secret). */
export type ApiToken = Outputs['tokens']['list'][number];
/** A user as `users.list` shows it to administrators. */
export type User = Outputs['users']['list'][number];

/**
 * The shortest new password the server accepts (`newPasswordSchema` of `@studio/policy`, held equal by the unit
 * test): a copy, so the page does not bundle the policy's schemas. The server checks it again.
 */
export const MIN_PASSWORD_LENGTH = 12;

/** The longest expiry `tokens.create` accepts, in days (`tokenCreateInput` of `@studio/policy`, held equal). */
export const MAX_TOKEN_DAYS = 365;

/** Why a new password (typed twice) would be refused, in words for people; null when it is fine. */
export function newPasswordProblem(password: string, confirm: string): string | null {
  if (password.length < MIN_PASSWORD_LENGTH) {
    return `Use at least ${MIN_PASSWORD_LENGTH} characters: a few words you will remember is a good password.`;
  }
  if (password !== confirm) return 'The two new passwords are not the same; type them again.';
  return null;
}

/**
 * The expiry field of the new-token form: empty for a token that never expires, else whole days from 1 to
 * {@link MAX_TOKEN_DAYS}. `problem` is the words for people when the text is neither.
 */
export function parseExpiryDays(text: string): { days: number | undefined } | { problem: string } {
  const trimmed = text.trim();
  if (trimmed === '') return { days: undefined };
  const days = Number(trimmed);
  if (!/^\d+$/.test(trimmed) || days < 1 || days > MAX_TOKEN_DAYS) {
    return { problem: `Expiry is a number of days from 1 to ${MAX_TOKEN_DAYS}, or empty for never.` };
  }
  return { days };
}

/** Whether a token still works, as its row says: revoked, expired or active. */
export function tokenStatus(token: ApiToken, now: number = Date.now()): 'revoked' | 'expired' | 'active' {
  if (token.revokedAt !== null) return 'revoked';
  if (token.expiresAt !== null && Date.parse(token.expiresAt) <= now) return 'expired';
  return 'active';
}

/** "never", "in 29 d", "2 h ago": when a token expires (or did). */
export function expiryLabel(expiresAt: string | null, now: number = Date.now()): string {
  if (expiresAt === null) return 'never';
  const at = Date.parse(expiresAt);
  if (at <= now) return `${formatAge(expiresAt, now)} ago`;
  // formatAge measures back from now; mirrored, it measures forward to the expiry.
  return `in ${formatAge(new Date(now - (at - now)).toISOString(), now)}`;
}

/** "never" or "5 min ago": when a token was last used (recorded at most once a minute). */
export function lastUsedLabel(lastUsedAt: string | null, now: number = Date.now()): string {
  return lastUsedAt === null ? 'never' : `${formatAge(lastUsedAt, now)} ago`;
}
