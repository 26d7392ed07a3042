import { newPasswordSchema, tokenCreateInput } from '@studio/policy';
import { describe, expect, it } from 'vitest';
import {
  type ApiToken,
  expiryLabel,
  lastUsedLabel,
  MAX_TOKEN_DAYS,
  MIN_PASSWORD_LENGTH,
  newPasswordProblem,
  parseExpiryDays,
  tokenStatus,
} from './accounts';

const NOW = Date.parse('2026-01-10T12:00:00Z');
const token = (over: Partial<ApiToken> = {}): ApiToken => ({
  id: 'tok_aaaaaaaaaaaaaaaa',
  name: 'ci',
  agent: false,
  createdAt: '2026-01-01T00:00:00Z',
  expiresAt: null,
  lastUsedAt: null,
  revokedAt: null,
  ...over,
});

describe('the copies of the policy bounds', () => {
  it('match the schemas the server checks with', () => {
    expect(newPasswordSchema.safeParse('x'.repeat(MIN_PASSWORD_LENGTH)).success).toBe(true);
    expect(newPasswordSchema.safeParse('x'.repeat(MIN_PASSWORD_LENGTH - 1)).success).toBe(false);
    expect(tokenCreateInput.safeParse({ name: 'a', expiresInDays: MAX_TOKEN_DAYS }).success).toBe(true);
    expect(tokenCreateInput.safeParse({ name: 'a', expiresInDays: MAX_TOKEN_DAYS + 1 }).success).toBe(false);
  });
});

describe('newPasswordProblem', () => {
  it('asks for the length first, then the same text twice', () => {
    expect(newPasswordProblem('short', 'short')).toMatch(/at least 12 characters/);
    expect(newPasswordProblem('a long passphrase', 'a long passphrasE')).toMatch(/not the same/);
    expect(newPasswordProblem('a long passphrase', 'a long passphrase')).toBeNull();
  });
});

describe('parseExpiryDays', () => {
  it('takes empty as never and whole days in range', () => {
    expect(parseExpiryDays(' ')).toEqual({ days: undefined });
    expect(parseExpiryDays('30')).toEqual({ days: 30 });
    for (const bad of ['0', '366', '1.5', '-1', 'ten'])
      expect(parseExpiryDays(bad)).toHaveProperty('problem');
  });
});

describe('token rows', () => {
  it('say whether a token works', () => {
    expect(tokenStatus(token(), NOW)).toBe('active');
    expect(tokenStatus(token({ expiresAt: '2026-01-10T11:59:59Z' }), NOW)).toBe('expired');
    expect(
      tokenStatus(token({ revokedAt: '2026-01-02T00:00:00Z', expiresAt: '2026-01-01T00:00:00Z' }), NOW),
    ).toBe('revoked');
  });

  it('label expiry and last use', () => {
    expect(expiryLabel(null, NOW)).toBe('never');
    expect(expiryLabel('2026-02-09T12:00:00Z', NOW)).toBe('in 30 d');
    expect(expiryLabel('2026-01-10T10:00:00Z', NOW)).toBe('2 h 0 min ago');
    expect(lastUsedLabel(null, NOW)).toBe('never');
    expect(lastUsedLabel('2026-01-10T11:55:00Z', NOW)).toBe('5 min ago');
  });
});
