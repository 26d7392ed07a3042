import { describe, expect, it } from 'vitest';
import { parseAnsi } from './ansi.ts';

describe('parseAnsi', () => {
  it('keeps plain text, markup included, as text', () => {
    const { segments } = parseAnsi('<img src=x onerror=alert(1)>');
    expect(segments).toEqual([{ text: '<img src=x onerror=alert(1)>', classes: [] }]);
  });

  it('maps SGR colours and attributes to class names and resets', () => {
    const { segments } = parseAnsi('a\u001b[1;31mred\u001b[0m b \u001b[92mgreen\u001b[39m');
    expect(segments).toEqual([
      { text: 'a', classes: [] },
      { text: 'red', classes: ['ansi-fg-1', 'ansi-bold'] },
      { text: ' b ', classes: [] },
      { text: 'green', classes: ['ansi-fg-10'] },
    ]);
  });

  it('drops cursor moves, OSC titles and stray controls', () => {
    const { segments } = parseAnsi('\u001b]0;title\u0007x\u001b[2Ky\u0008z\u001b[?25l');
    expect(segments.map((s) => s.text).join('')).toBe('xyz');
  });

  it('carries the state across chunks and handles 256-colour', () => {
    const first = parseAnsi('\u001b[38;5;4mblue');
    const second = parseAnsi('still', first.state);
    expect(second.segments[0]?.classes).toEqual(['ansi-fg-4']);
  });
});
