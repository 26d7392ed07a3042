// SSRF through alternate spellings of loopback and metadata addresses (CWE-918, SECURITY.md §3): a check on the
// raw string ("does it start with 127.?") is bypassed by decimal, octal, hex, short and IPv4-mapped forms.
import { describe, expect, it } from 'vitest';
import { canonicalizeHost, isLoopbackOrPrivate } from '../preview.ts';

describe('regression: alternate IP forms', () => {
  it.each([
    ['2130706433', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'],
    ['0x7f.1', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['[::ffff:127.0.0.1]', '127.0.0.1'],
    ['::ffff:7f00:1', '127.0.0.1'],
    ['127.0.0.1.', '127.0.0.1'],
    ['0xa9fea9fe', '169.254.169.254'],
    ['0251.0376.0251.0376', '169.254.169.254'],
  ])('%j is seen as %s and refused as non-public', (input, canonical) => {
    expect(canonicalizeHost(input).value).toBe(canonical);
    expect(isLoopbackOrPrivate(input)).toBe(true);
  });

  it('a zone id cannot smuggle a link-local target', () => {
    for (const host of ['[fe80::1%25eth0]', 'fe80::1%eth0', '[fe80::1%1]']) {
      expect(() => canonicalizeHost(host)).toThrow(expect.objectContaining({ code: 'HOST_INVALID' }));
      expect(() => canonicalizeHost(host)).toThrow(/zone ids/);
    }
  });
});
