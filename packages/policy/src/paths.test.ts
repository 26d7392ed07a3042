import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PolicyErrorCode } from './errors.ts';
import { isPolicyError } from './errors.ts';
import {
  isCanonicalWorkspacePath,
  isWithinRoot,
  joinWorkspacePath,
  type ResolveWorkspacePathOptions,
  resolveWorkspacePath,
} from './paths.ts';

function codeOf(fn: () => unknown): PolicyErrorCode | 'NO_THROW' {
  try {
    fn();
  } catch (e) {
    if (isPolicyError(e)) return e.code;
    throw e;
  }
  return 'NO_THROW';
}

const refuse = (input: string, options?: ResolveWorkspacePathOptions) =>
  codeOf(() => resolveWorkspacePath(input, options));

describe('resolveWorkspacePath: accepted paths come out canonical', () => {
  it.each([
    ['a', 'a'],
    ['a/b/c.txt', 'a/b/c.txt'],
    ['./a', 'a'],
    ['a/./b', 'a/b'],
    ['a//b///c', 'a/b/c'],
    ['a/b/', 'a/b'],
    ['...', '...'],
    ['a/..b/c..', 'a/..b/c..'],
    ['.hidden/.env', '.hidden/.env'],
    ['caf%C3%A9.txt', 'café.txt'],
    ['café.txt', 'café.txt'],
    ['a%2Fb', 'a/b'],
    ['100%25', '100%'],
    ['emoji-😀', 'emoji-😀'],
    ['-rf', '-rf'],
    ['ab:c', 'ab:c'],
    ['x/C:', 'x/C:'],
  ])('%j → %j', (input, expected) => {
    expect(resolveWorkspacePath(input)).toBe(expected);
  });
});

describe('resolveWorkspacePath: refusals', () => {
  it.each<[string, PolicyErrorCode]>([
    ['', 'PATH_EMPTY'],
    ['/etc/passwd', 'PATH_ABSOLUTE'],
    ['/', 'PATH_ABSOLUTE'],
    ['//server/share', 'PATH_ABSOLUTE'],
    ['%2Fetc%2Fpasswd', 'PATH_ABSOLUTE'],
    ['%2fetc', 'PATH_ABSOLUTE'],
    ['C:', 'PATH_ABSOLUTE'],
    ['c:/windows', 'PATH_ABSOLUTE'],
    ['C:foo', 'PATH_ABSOLUTE'],
    ['a:b', 'PATH_ABSOLUTE'],
    ['./C:', 'PATH_ABSOLUTE'],
    ['%2e%2fC:', 'PATH_ABSOLUTE'],
    ['//C:', 'PATH_ABSOLUTE'],
    ['\\\\server\\share', 'PATH_ABSOLUTE'],
    ['\\etc', 'PATH_ABSOLUTE'],
    ['%5Cetc', 'PATH_ABSOLUTE'],
    ['a\\b', 'PATH_BACKSLASH'],
    ['..\\x', 'PATH_BACKSLASH'],
    ['a%5Cb', 'PATH_BACKSLASH'],
    ['..', 'PATH_TRAVERSAL'],
    ['../x', 'PATH_TRAVERSAL'],
    ['a/../b', 'PATH_TRAVERSAL'],
    ['a/b/..', 'PATH_TRAVERSAL'],
    ['a/../../etc/passwd', 'PATH_TRAVERSAL'],
    ['./../x', 'PATH_TRAVERSAL'],
    ['%2e%2e/x', 'PATH_TRAVERSAL'],
    ['%2E%2E%2Fx', 'PATH_TRAVERSAL'],
    ['.%2e/x', 'PATH_TRAVERSAL'],
    ['a%2F..%2F..%2Fetc', 'PATH_TRAVERSAL'],
    ['%252e%252e/x', 'PATH_ENCODING'],
    ['%252F', 'PATH_ENCODING'],
    ['a%2541', 'PATH_ENCODING'],
    ['%zz', 'PATH_ENCODING'],
    ['%', 'PATH_ENCODING'],
    ['a%', 'PATH_ENCODING'],
    ['a%2', 'PATH_ENCODING'],
    ['%C0%AE%C0%AE/x', 'PATH_ENCODING'],
    ['%C0%AF', 'PATH_ENCODING'],
    ['%ED%A0%80', 'PATH_ENCODING'],
    ['%FF', 'PATH_ENCODING'],
    ['a\uD800b', 'PATH_ENCODING'],
    ['a\uDC00', 'PATH_ENCODING'],
    ['a\u0000b', 'PATH_CONTROL_CHAR'],
    ['a%00b', 'PATH_CONTROL_CHAR'],
    ['file.txt%00.png', 'PATH_CONTROL_CHAR'],
    ['a\nb', 'PATH_CONTROL_CHAR'],
    ['a%0Ab', 'PATH_CONTROL_CHAR'],
    ['a\tb', 'PATH_CONTROL_CHAR'],
    ['a\u001fb', 'PATH_CONTROL_CHAR'],
    ['a\u007fb', 'PATH_CONTROL_CHAR'],
    ['a%7Fb', 'PATH_CONTROL_CHAR'],
    ['a\u0085b', 'PATH_CONTROL_CHAR'],
    ['a%C2%85b', 'PATH_CONTROL_CHAR'],
    ['a\u009fb', 'PATH_CONTROL_CHAR'],
    ['.', 'PATH_IS_ROOT'],
    ['./', 'PATH_IS_ROOT'],
    ['.//.', 'PATH_IS_ROOT'],
    ['%2e', 'PATH_IS_ROOT'],
  ])('%j → %s', (input, code) => {
    expect(refuse(input)).toBe(code);
  });

  it('refuses non-string input with INPUT_INVALID', () => {
    expect(codeOf(() => resolveWorkspacePath(42 as unknown as string))).toBe('INPUT_INVALID');
    expect(codeOf(() => resolveWorkspacePath(undefined as unknown as string))).toBe('INPUT_INVALID');
    expect(codeOf(() => resolveWorkspacePath(['a'] as unknown as string))).toBe('INPUT_INVALID');
  });

  it('gives a message that tells the caller what to do', () => {
    expect(() => resolveWorkspacePath('/etc')).toThrow(/remove the leading '\/'/);
    expect(() => resolveWorkspacePath('a/../b')).toThrow(/'\.\.'/);
  });

  it('keeps the decoding error as cause', () => {
    try {
      resolveWorkspacePath('%zz');
      expect.unreachable();
    } catch (e) {
      expect((e as Error).cause).toBeInstanceOf(URIError);
    }
  });
});

describe('resolveWorkspacePath: root handling', () => {
  it('returns "" for the root only when allowRoot', () => {
    expect(resolveWorkspacePath('.', { allowRoot: true })).toBe('');
    expect(resolveWorkspacePath('./', { allowRoot: true })).toBe('');
    expect(resolveWorkspacePath('./a', { allowRoot: true })).toBe('a');
  });
  it('still refuses the empty string and absolute root with allowRoot', () => {
    expect(refuse('', { allowRoot: true })).toBe('PATH_EMPTY');
    expect(refuse('/', { allowRoot: true })).toBe('PATH_ABSOLUTE');
    expect(refuse('..', { allowRoot: true })).toBe('PATH_TRAVERSAL');
  });
});

describe('resolveWorkspacePath: lengths are counted in UTF-8 bytes after decoding', () => {
  it('accepts a 255-byte name and refuses 256', () => {
    expect(resolveWorkspacePath('a'.repeat(255))).toHaveLength(255);
    expect(refuse('a'.repeat(256))).toBe('SEGMENT_TOO_LONG');
  });
  it('counts multi-byte characters as bytes', () => {
    // 'é' is 2 bytes: 128 of them are 256 bytes though only 128 UTF-16 units.
    expect(refuse('é'.repeat(128))).toBe('SEGMENT_TOO_LONG');
    expect(resolveWorkspacePath('é'.repeat(127))).toHaveLength(127);
    // 4-byte emoji: 64 × 4 = 256 bytes.
    expect(refuse('😀'.repeat(64))).toBe('SEGMENT_TOO_LONG');
  });
  it('checks the decoded segment length, not the encoded one', () => {
    expect(resolveWorkspacePath('%41'.repeat(255))).toBe('A'.repeat(255));
    expect(refuse('%41'.repeat(256))).toBe('SEGMENT_TOO_LONG');
  });
  it('accepts a 4096-byte path and refuses 4097', () => {
    const seg = 'a'.repeat(200);
    const path4096 = `${Array.from({ length: 20 }, () => seg).join('/')}/${'b'.repeat(4096 - 20 * 201)}`;
    expect(Buffer.byteLength(path4096)).toBe(4096);
    expect(resolveWorkspacePath(path4096)).toBe(path4096);
    expect(refuse(`${path4096}c`)).toBe('PATH_TOO_LONG');
  });
  it('refuses huge input before decoding it', () => {
    expect(refuse('a/'.repeat(1_000_000))).toBe('PATH_TOO_LONG');
    expect(refuse('%2e'.repeat(5000))).toBe('PATH_TOO_LONG');
  });
  it('honours tighter options and refuses looser or malformed ones', () => {
    expect(refuse('abcdef', { maxSegmentLength: 5 })).toBe('SEGMENT_TOO_LONG');
    expect(refuse('ab/cd', { maxPathLength: 4 })).toBe('PATH_TOO_LONG');
    expect(refuse('a', { maxPathLength: 5000 })).toBe('INPUT_INVALID');
    expect(refuse('a', { maxSegmentLength: 256 })).toBe('INPUT_INVALID');
    expect(refuse('a', { maxSegmentLength: 0 })).toBe('INPUT_INVALID');
    expect(refuse('a', { maxPathLength: 1.5 })).toBe('INPUT_INVALID');
    expect(refuse('a', { allowRoot: 'yes' as unknown as boolean })).toBe('INPUT_INVALID');
  });
});

describe('isWithinRoot', () => {
  it.each<[string, string, boolean]>([
    ['/ws/abc', '/ws/abc', true],
    ['/ws/abc', '/ws/abc/', true],
    ['/ws/abc', '/ws/abc/x', true],
    ['/ws/abc', '/ws/abc/x/y', true],
    ['/ws/abc/', '/ws/abc/x', true],
    ['/ws/abc', '/ws//abc///x', true],
    ['/ws/abc', '/ws/abc-evil', false],
    ['/ws/abc', '/ws/abcd', false],
    ['/ws/abc', '/ws/ab', false],
    ['/ws/abc', '/ws', false],
    ['/ws/abc', '/', false],
    ['/ws/abc', '/other', false],
    ['/ws/abc', '/ws/abc/../abc-evil', false],
    ['/ws/abc', '/ws/abc/./x', false],
    ['/ws/abc', 'ws/abc/x', false],
    ['/ws/abc', '', false],
    ['/ws/abc', '/ws/abc/x\u0000', false],
    ['/ws/abc', '/ws/abc\\x', false],
    ['ws/abc', 'ws/abc/x', false],
    ['/ws/../etc', '/etc/x', false],
    ['/', '/anything', true],
  ])('isWithinRoot(%j, %j) = %s', (root, candidate, expected) => {
    expect(isWithinRoot(root, candidate)).toBe(expected);
  });
  it('answers false for non-strings', () => {
    expect(isWithinRoot(undefined as unknown as string, '/x')).toBe(false);
    expect(isWithinRoot('/x', null as unknown as string)).toBe(false);
  });
});

describe('joinWorkspacePath', () => {
  it('joins canonical relative paths under the root', () => {
    expect(joinWorkspacePath('/ws/abc', 'a/b')).toBe('/ws/abc/a/b');
    expect(joinWorkspacePath('/ws/abc/', 'a')).toBe('/ws/abc/a');
    expect(joinWorkspacePath('/ws/abc', '')).toBe('/ws/abc');
    expect(joinWorkspacePath('/ws/abc', '.')).toBe('/ws/abc');
    expect(joinWorkspacePath('/ws/abc', '-rf')).toBe('/ws/abc/-rf');
  });
  it('never decodes: a literal % name stays literal', () => {
    expect(joinWorkspacePath('/ws/abc', '100%')).toBe('/ws/abc/100%');
  });
  it.each<[string, PolicyErrorCode]>([
    ['../x', 'PATH_TRAVERSAL'],
    ['a/../../x', 'PATH_TRAVERSAL'],
    ['/etc', 'PATH_ABSOLUTE'],
    ['a\\b', 'PATH_BACKSLASH'],
    ['a\u0000', 'PATH_CONTROL_CHAR'],
    ['%2e%2e', 'PATH_ENCODING'],
  ])('refuses a non-canonical relative %j with %s', (relative, code) => {
    expect(codeOf(() => joinWorkspacePath('/ws/abc', relative))).toBe(code);
  });
  it.each(['', 'ws', '/', '/ws/../etc', '/ws/./abc', '/ws\u0000'])('refuses the root %j', (root) => {
    expect(codeOf(() => joinWorkspacePath(root, 'a'))).toBe('INPUT_INVALID');
  });
});

describe('isCanonicalWorkspacePath', () => {
  it.each(['', 'a', 'a/b', '.env', '100%'])('%j is canonical', (p) => {
    expect(isCanonicalWorkspacePath(p)).toBe(true);
  });
  it.each(['.', './a', 'a/', 'a//b', '/a', '..', 'a/../b', '%2e%2e', 'a\\b', 'a\u0000', 'C:x'])(
    '%j is not',
    (p) => {
      expect(isCanonicalWorkspacePath(p)).toBe(false);
    },
  );
  it('is false for non-strings', () => {
    expect(isCanonicalWorkspacePath(1 as unknown as string)).toBe(false);
  });
});

// Pieces chosen to hit every rule: traversal in plain and encoded spellings, separators of both kinds,
// control characters, non-ASCII and partial escapes.
const piece = fc.constantFrom(
  '..',
  '.',
  '/',
  '//',
  '\\',
  '%2e',
  '%2E',
  '%2f',
  '%2F',
  '%5c',
  '%25',
  '%252e',
  '%',
  '%00',
  '\u0000',
  '\u0085',
  '\u007f',
  'a',
  'b',
  '-',
  'é',
  '😀',
  '\uD800',
  'C:',
  '~',
  ' ',
);
const arbitraryPath = fc.oneof(
  fc.array(piece, { maxLength: 12 }).map((parts) => parts.join('')),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
);

describe('resolveWorkspacePath: property', () => {
  it('every accepted result stays inside the root and is canonical', () => {
    const root = '/ws/abc';
    fc.assert(
      fc.property(arbitraryPath, fc.boolean(), (input, allowRoot) => {
        let r: string;
        try {
          r = resolveWorkspacePath(input, { allowRoot });
        } catch (e) {
          if (!isPolicyError(e)) throw e;
          return;
        }
        expect(isWithinRoot(root, path.posix.resolve(root, r))).toBe(true);
        expect(r.split('/')).not.toContain('..');
        expect(r.startsWith('/')).toBe(false);
        expect(r.includes('\u0000')).toBe(false);
        expect(r.includes('\\')).toBe(false);
        expect(/%[0-9A-Fa-f]{2}/.test(r)).toBe(false);
        expect(isCanonicalWorkspacePath(r)).toBe(true);
        expect(joinWorkspacePath(root, r)).toBe(path.posix.resolve(root, r));
        if (r === '') expect(allowRoot).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it('only ever throws PolicyError', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (input) => {
        try {
          resolveWorkspacePath(input);
        } catch (e) {
          expect(isPolicyError(e)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('isWithinRoot: property against path.posix', () => {
  it('agrees with a relative() check for resolved absolute paths', () => {
    const seg = fc.constantFrom('ws', 'abc', 'abc-evil', 'abcd', 'x', '..', '.');
    const abs = fc.array(seg, { maxLength: 5 }).map((s) => path.posix.resolve('/', ...s));
    fc.assert(
      fc.property(abs, abs, (root, candidate) => {
        const rel = path.posix.relative(root, candidate);
        const expected = rel === '' || (!rel.startsWith('..') && !path.posix.isAbsolute(rel));
        expect(isWithinRoot(root, candidate)).toBe(expected);
      }),
      { numRuns: 2000 },
    );
  });
});
