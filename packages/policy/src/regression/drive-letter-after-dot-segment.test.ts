// Found by the fast-check property in paths.test.ts: '%2e%2fC:' decodes to './C:', which normalised to 'C:' —
// a drive-relative Windows form that the check on the raw string had missed. The drive-letter rule is now
// applied to the first segment that survives normalisation.
import { describe, expect, it } from 'vitest';
import { isCanonicalWorkspacePath, resolveWorkspacePath } from '../paths.ts';

describe('regression: drive letter behind a dot segment', () => {
  it.each(['%2e%2fC:', './C:', './/C:x', '.%2FD:%2Fwindows'])('%j is refused as absolute', (input) => {
    expect(() => resolveWorkspacePath(input)).toThrow(expect.objectContaining({ code: 'PATH_ABSOLUTE' }));
  });

  it('every accepted result is canonical (the invariant that caught it)', () => {
    for (const input of ['x/C:', 'ab:c', './x']) {
      expect(isCanonicalWorkspacePath(resolveWorkspacePath(input))).toBe(true);
    }
  });
});
