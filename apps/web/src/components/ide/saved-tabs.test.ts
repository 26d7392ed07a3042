import { describe, expect, it } from 'vitest';
import { MAX_SAVED_TABS, parseSavedTabs, savedTabsKey, serializeTabs } from './saved-tabs.ts';

// The editor tabs kept per session in the browser (issue 22): what is written reads back the same, and what
// is read is checked, whatever the storage holds.

describe('saved tabs', () => {
  it('round-trips paths, sizes, order and the active tab, per session', () => {
    const raw = serializeTabs(
      [
        { path: 'src/a.ts', size: 10 },
        { path: 'README.md', size: 0 },
      ],
      'README.md',
    );
    expect(parseSavedTabs(raw)).toEqual({
      tabs: [
        { path: 'src/a.ts', size: 10 },
        { path: 'README.md', size: 0 },
      ],
      active: 'README.md',
    });
    expect(savedTabsKey('ses_1')).not.toBe(savedTabsKey('ses_2'));
    expect(parseSavedTabs(serializeTabs([{ path: 'a', size: 1 }], 'gone'))?.active).toBeNull();
  });

  it('refuses what it did not write, and drops entries that are not canonical workspace paths', () => {
    for (const raw of [null, '', 'not json', '[]', 'null', '{"v":2,"tabs":[]}', '{"v":1}', '"x"']) {
      expect(parseSavedTabs(raw)).toBeNull();
    }
    const raw = JSON.stringify({
      v: 1,
      tabs: [
        { path: '../etc/passwd', size: 1 },
        { path: '/etc/passwd', size: 1 },
        { path: 'a/./b', size: 1 },
        { path: '', size: 1 },
        { path: 'bad\u0000nul', size: 1 },
        { path: 'ok.txt', size: -1 },
        { path: 'ok.txt', size: 1.5 },
        { path: 'ok.txt', size: '3' },
        'ok.txt',
        null,
        { path: 'ok.txt', size: 3 },
        { path: 'ok.txt', size: 4 },
      ],
      active: '../etc/passwd',
    });
    expect(parseSavedTabs(raw)).toEqual({ tabs: [{ path: 'ok.txt', size: 3 }], active: null });
  });

  it('keeps at most MAX_SAVED_TABS', () => {
    const many = Array.from({ length: MAX_SAVED_TABS + 10 }, (_, i) => ({ path: `f${i}.txt`, size: i }));
    expect(parseSavedTabs(serializeTabs(many, 'f0.txt'))?.tabs).toHaveLength(MAX_SAVED_TABS);
    expect(parseSavedTabs(JSON.stringify({ v: 1, tabs: many, active: null }))?.tabs).toHaveLength(
      MAX_SAVED_TABS,
    );
  });
});
