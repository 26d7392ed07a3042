// Seed bug (SECURITY.md §2): the seed validator checked `resolved.startsWith(root)`, which accepts the sibling
// directory `/ws/abc-evil` for the root `/ws/abc`. Containment must be decided on a segment boundary.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isWithinRoot, joinWorkspacePath, resolveWorkspacePath } from '../paths.ts';

const seedIsWithin = (root: string, candidate: string) => candidate.startsWith(root);

describe('regression: sibling prefix', () => {
  it('the seed check is fooled by a sibling (documents the bug this replaces)', () => {
    expect(seedIsWithin('/ws/abc', '/ws/abc-evil/secret')).toBe(true);
  });

  it.each(['/ws/abc-evil', '/ws/abc-evil/secret', '/ws/abcd', '/ws/abc.bak', '/ws/abc~'])(
    'isWithinRoot refuses the sibling %j',
    (candidate) => {
      expect(isWithinRoot('/ws/abc', candidate)).toBe(false);
      expect(isWithinRoot('/ws/abc/', candidate)).toBe(false);
    },
  );

  it('a relative path cannot reach the sibling through resolve + join', () => {
    for (const attempt of ['../abc-evil/secret', '%2e%2e/abc-evil', '..%2fabc-evil', 'x/../../abc-evil']) {
      expect(() => joinWorkspacePath('/ws/abc', resolveWorkspacePath(attempt))).toThrow();
    }
  });

  it('Node resolves such an attempt to the sibling, which isWithinRoot then refuses', () => {
    expect(isWithinRoot('/ws/abc', path.posix.resolve('/ws/abc', '../abc-evil'))).toBe(false);
  });
});
