import { filesSearchInput, MAX_SEARCH_QUERY } from '@studio/policy/schemas';
import { describe, expect, it } from 'vitest';
import {
  MAX_SEARCH_LINE,
  MAX_SEARCH_MATCHES,
  parseRipgrepFiles,
  parseRipgrepJson,
  ripgrepArgs,
  windowLine,
} from './search.ts';

const SID = 'ses_0123456789abcdefgh';

// ripgrep 13's --json lines, as it writes them for `rg --json -e needle -- /workspace`.
const match = (path: string, line: number, text: string, subs: [number, number][]) =>
  JSON.stringify({
    type: 'match',
    data: {
      path: { text: path },
      lines: { text: `${text}\n` },
      line_number: line,
      absolute_offset: 0,
      submatches: subs.map(([start, end]) => ({ match: { text: text.slice(start, end) }, start, end })),
    },
  });
const begin = (path: string) => JSON.stringify({ type: 'begin', data: { path: { text: path } } });
const summary = JSON.stringify({ type: 'summary', data: { stats: { matches: 3 } } });

describe('files.search input', () => {
  it('takes a query of 1..500 characters, literal and case-insensitive by default', () => {
    expect(filesSearchInput.parse({ sessionId: SID, query: 'needle' })).toEqual({
      sessionId: SID,
      query: 'needle',
      caseSensitive: false,
      regex: false,
    });
    expect(filesSearchInput.safeParse({ sessionId: SID, query: '' }).success).toBe(false);
    expect(
      filesSearchInput.safeParse({ sessionId: SID, query: 'x'.repeat(MAX_SEARCH_QUERY + 1) }).success,
    ).toBe(false);
  });

  it('refuses control characters and line breaks, and unknown keys', () => {
    for (const query of ['a\nb', 'a\u0000b', 'a\rb', 'a\u007fb']) {
      expect(filesSearchInput.safeParse({ sessionId: SID, query }).success).toBe(false);
    }
    expect(filesSearchInput.safeParse({ sessionId: SID, query: 'x', path: '/etc' }).success).toBe(false);
  });
});

describe('ripgrep argv', () => {
  it('passes the query as one argument after -e, before --, literal unless regex', () => {
    const args = ripgrepArgs({ query: '--pre=sh', caseSensitive: false, regex: false });
    expect(args[0]).toBe('rg');
    expect(args).toContain('--json');
    expect(args).toContain('--fixed-strings');
    expect(args).toContain('--ignore-case');
    const e = args.indexOf('-e');
    expect(args[e + 1]).toBe('--pre=sh');
    expect(args.slice(e + 2)).toEqual(['--', '/workspace']);
    const regex = ripgrepArgs({ query: 'a.c', caseSensitive: true, regex: true });
    expect(regex).not.toContain('--fixed-strings');
    expect(regex).toContain('--case-sensitive');
  });
});

describe("ripgrep's JSON output", () => {
  it('groups matches by workspace path, lines without their break, offsets in characters', () => {
    const out = [
      begin('/workspace/src/a.ts'),
      match('/workspace/src/a.ts', 3, 'const needle = 1;', [[6, 12]]),
      match('/workspace/src/a.ts', 9, 'needle needle', [
        [0, 6],
        [7, 13],
      ]),
      begin('/workspace/b.txt'),
      match('/workspace/b.txt', 1, 'héllo needle', [[7, 13]]),
      summary,
      '',
    ].join('\n');
    const result = parseRipgrepJson(out);
    expect(result.truncated).toBe(false);
    expect(result.matchCount).toBe(3);
    expect(result.files.map((f) => f.path)).toEqual(['src/a.ts', 'b.txt']);
    expect(result.files[0]?.matches[1]).toEqual({
      line: 9,
      text: 'needle needle',
      ranges: [
        [0, 6],
        [7, 13],
      ],
    });
    // 'é' is two UTF-8 bytes: ripgrep's byte offset 7 is character 6.
    expect(result.files[1]?.matches[0]).toEqual({ line: 1, text: 'héllo needle', ranges: [[6, 12]] });
  });

  it('reads base64 paths and lines (not UTF-8), and skips a cut last line', () => {
    const bytes = JSON.stringify({
      type: 'match',
      data: {
        path: { bytes: Buffer.from('/workspace/odd.bin').toString('base64') },
        lines: { bytes: Buffer.from('a needle\n').toString('base64') },
        line_number: 2,
        submatches: [{ match: { text: 'needle' }, start: 2, end: 8 }],
      },
    });
    const result = parseRipgrepJson(`${bytes}\n{"type":"match","data":{"pa`);
    expect(result.files).toEqual([
      { path: 'odd.bin', matches: [{ line: 2, text: 'a needle', ranges: [[2, 8]] }] },
    ]);
    expect(result.truncated).toBe(true);
  });

  it(`stops at ${MAX_SEARCH_MATCHES} matches and says so`, () => {
    const lines = Array.from({ length: MAX_SEARCH_MATCHES + 5 }, (_, i) =>
      match(`/workspace/f${i % 7}.txt`, i + 1, 'needle', [[0, 6]]),
    );
    const result = parseRipgrepJson(lines.join('\n'));
    expect(result.matchCount).toBe(MAX_SEARCH_MATCHES);
    expect(result.truncated).toBe(true);
  });

  it(`cuts long lines to ${MAX_SEARCH_LINE} characters around the first match`, () => {
    const text = `${'x'.repeat(1000)}needle${'y'.repeat(1000)}`;
    const cut = windowLine(text, [[1000, 1006]]);
    expect(cut.text).toHaveLength(MAX_SEARCH_LINE);
    const [range] = cut.ranges;
    expect(range && cut.text.slice(range[0], range[1])).toBe('needle');
    expect(windowLine('short', [[0, 5]])).toEqual({ text: 'short', ranges: [[0, 5]] });
  });
});

describe("ripgrep's file list", () => {
  it('workspace paths, sorted, a cut last name dropped', () => {
    expect(parseRipgrepFiles('/workspace/b.txt\n/workspace/a/c.ts\n', false)).toEqual({
      paths: ['a/c.ts', 'b.txt'],
      truncated: false,
    });
    expect(parseRipgrepFiles('/workspace/b.txt\n/workspace/a/c', true)).toEqual({
      paths: ['b.txt'],
      truncated: true,
    });
  });
});
