import { describe, expect, it } from 'vitest';
import { TERMINAL_FONT_FAMILY, TERMINAL_THEME } from './terminal-theme.ts';

const ANSI = ['black', 'red', 'green', 'yellow', 'blue', 'magenta', 'cyan', 'white'] as const;
const rgb = (hex: string) => [1, 3, 5].map((i) => Number.parseInt(hex.slice(i, i + 2), 16));

describe('the terminal theme', () => {
  it('sets all 16 ANSI colours, the cursor and the selection, as #rrggbb', () => {
    const theme: Record<string, string> = TERMINAL_THEME;
    for (const name of [
      ...ANSI,
      ...ANSI.map((c) => `bright${c[0]?.toUpperCase()}${c.slice(1)}`),
      'background',
      'foreground',
      'cursor',
      'cursorAccent',
      'selectionBackground',
    ])
      expect(theme[name], name).toMatch(/^#[0-9a-f]{6}$/);
  });

  it('keeps red red and the cursor apart from the text and the background', () => {
    const [r, g, b] = rgb(TERMINAL_THEME.red);
    expect(r).toBeGreaterThan(150);
    expect(Math.max(g ?? 255, b ?? 255)).toBeLessThan(90);
    expect(TERMINAL_THEME.cursor).not.toBe(TERMINAL_THEME.foreground);
    expect(TERMINAL_THEME.cursor).not.toBe(TERMINAL_THEME.background);
    expect(TERMINAL_FONT_FAMILY).toBe('"JetBrains Mono", monospace');
  });
});
