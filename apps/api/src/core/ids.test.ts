import { describe, expect, it } from 'vitest';
import { newId } from './ids.ts';

describe('newId', () => {
  it('gives 22 URL-safe characters after the prefix, never the same twice across refills of its block', () => {
    const ids = Array.from({ length: 1000 }, () => newId('req_'));
    for (const id of ids) expect(id).toMatch(/^req_[A-Za-z0-9_-]{22}$/);
    expect(new Set(ids).size).toBe(ids.length);
    // 128 bits each: the 16 bytes of one id are not a shifted copy of its neighbour's.
    expect(new Set(ids.map((id) => id.slice(4, 10))).size).toBe(ids.length);
  });
});
