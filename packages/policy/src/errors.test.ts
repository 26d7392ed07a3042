import { describe, expect, it } from 'vitest';
import { isPolicyError, POLICY_ERROR_CODES, PolicyError } from './errors.ts';

describe('PolicyError', () => {
  it('carries a code, a message and an optional cause', () => {
    const cause = new Error('inner');
    const e = new PolicyError('PATH_TRAVERSAL', 'remove the ..', { cause });
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('PolicyError');
    expect(e.code).toBe('PATH_TRAVERSAL');
    expect(e.message).toBe('remove the ..');
    expect(e.cause).toBe(cause);
    expect(new PolicyError('PATH_EMPTY', 'x').cause).toBeUndefined();
    expect('cause' in new PolicyError('PATH_EMPTY', 'x')).toBe(false);
  });

  it('has a closed, frozen, duplicate-free list of codes', () => {
    expect(Object.isFrozen(POLICY_ERROR_CODES)).toBe(true);
    expect(new Set(POLICY_ERROR_CODES).size).toBe(POLICY_ERROR_CODES.length);
    for (const code of [
      'PATH_EMPTY',
      'PATH_TRAVERSAL',
      'PORT_BLOCKED',
      'TOKEN_EXPIRED',
      'RATE_LIMITED',
    ] as const) {
      expect(POLICY_ERROR_CODES).toContain(code);
    }
  });
});

describe('isPolicyError', () => {
  it('recognises every code', () => {
    for (const code of POLICY_ERROR_CODES) expect(isPolicyError(new PolicyError(code, 'x'))).toBe(true);
  });

  it('recognises an error from another copy of the package by name and code', () => {
    class PolicyErrorCopy extends Error {
      override readonly name = 'PolicyError';
      readonly code = 'PATH_EMPTY';
    }
    expect(isPolicyError(new PolicyErrorCopy('x'))).toBe(true);
  });

  it.each<[string, unknown]>([
    ['a plain Error', new Error('x')],
    ['a Node system error', Object.assign(new Error('x'), { code: 'ENOENT' })],
    ['an unknown code', Object.assign(new PolicyError('PATH_EMPTY', 'x'), { code: 'NOPE' })],
    ['another error with a policy code', Object.assign(new TypeError('x'), { code: 'PATH_EMPTY' })],
    ['a plain object', { name: 'PolicyError', code: 'PATH_EMPTY', message: 'x' }],
    ['null', null],
    ['a string', 'PATH_EMPTY'],
  ])('rejects %s', (_, value) => {
    expect(isPolicyError(value)).toBe(false);
  });
});
