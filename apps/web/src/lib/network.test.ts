import { describe, expect, it } from 'vitest';
import { formatAllowList, listBrief, networkLabel, parseAllowList } from './network.ts';

describe('allowlist text', () => {
  it('takes entries one per line, or separated by commas or spaces, without blanks or repeats', () => {
    expect(
      parseAllowList('registry.npmjs.org\n*.pypi.org, example.com:8443  10.0.0.0/8\n\n registry.npmjs.org '),
    ).toEqual(['registry.npmjs.org', '*.pypi.org', 'example.com:8443', '10.0.0.0/8']);
    expect(parseAllowList('  \n ,')).toEqual([]);
    expect(parseAllowList(formatAllowList(['a.example', 'b.example:81']))).toEqual([
      'a.example',
      'b.example:81',
    ]);
  });
});

describe('network labels', () => {
  it('names the mode, and for an allowlist how many hosts', () => {
    expect(networkLabel({ mode: 'none', allow: [] })).toBe('network: none');
    expect(networkLabel({ mode: 'allowlist', allow: ['a.example'] })).toBe('network: allowlist · 1 host');
    expect(networkLabel({ mode: 'allowlist', allow: ['a.example', 'b.example'] })).toBe(
      'network: allowlist · 2 hosts',
    );
    expect(networkLabel({ mode: 'open', allow: [] })).toBe('network: open');
  });

  it('shortens long lists for one line', () => {
    expect(listBrief([])).toBe('nothing');
    expect(listBrief(['a', 'b'])).toBe('a, b');
    expect(listBrief(['a', 'b', 'c', 'd', 'e', 'f'])).toBe('a, b, c, d … (+2 more)');
  });
});
