import { describe, expect, it } from 'vitest';
import { reportablePath } from './file-watches.ts';

describe('reportablePath (paths a sandbox reports are untrusted)', () => {
  it('takes relative paths of ordinary names', () => {
    for (const ok of ['a.txt', 'src/index.ts', 'dir with space/ünï.md', '.hidden', '%2e%2e']) {
      expect(reportablePath(ok), ok).toBe(true);
    }
  });
  it('refuses empty, absolute, dot segments, controls, backslashes and overlong names', () => {
    for (const bad of [
      '',
      '/etc/passwd',
      'a//b',
      './a',
      'a/../b',
      '..',
      'a\nb',
      'a\u0000',
      'a\\\\b',
      `${'x'.repeat(256)}`,
      'a/'.repeat(2100),
    ]) {
      expect(reportablePath(bad), JSON.stringify(bad)).toBe(false);
    }
  });
});
