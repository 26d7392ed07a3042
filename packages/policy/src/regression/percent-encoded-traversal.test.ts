// Encoded traversal (CWE-22, CWE-174): decoding must happen exactly once and the decoded path be checked.
import { describe, expect, it } from 'vitest';
import { isPolicyError } from '../errors.ts';
import { resolveWorkspacePath } from '../paths.ts';

const code = (input: string) => {
  try {
    resolveWorkspacePath(input);
    return 'ACCEPTED';
  } catch (e) {
    return isPolicyError(e) ? e.code : 'OTHER';
  }
};

describe('regression: percent-encoded traversal', () => {
  it.each(['%2e%2e/etc/passwd', '%2E%2E%2Fetc%2Fpasswd', '..%2F..%2Fetc', '.%2e/x', 'a/%2e%2e/%2e%2e/x'])(
    'single-encoded %j is decoded and refused as traversal',
    (input) => {
      expect(code(input)).toBe('PATH_TRAVERSAL');
    },
  );

  it.each(['%252e%252e/etc/passwd', '%252e%252e%252fetc', '%25%32%65'])(
    'double-encoded %j is refused, not passed on for someone to decode again',
    (input) => {
      expect(code(input)).toBe('PATH_ENCODING');
    },
  );

  it.each(['%c0%ae%c0%ae/etc', '%e0%80%ae', '%c0%af'])('overlong UTF-8 %j is refused', (input) => {
    expect(code(input)).toBe('PATH_ENCODING');
  });

  it('an encoded NUL cannot truncate a name', () => {
    expect(code('secret.txt%00.png')).toBe('PATH_CONTROL_CHAR');
  });
});
