import type { ITheme } from '@xterm/xterm';

/**
 * The terminal's font: JetBrains Mono, bundled with the IDE (@fontsource/jetbrains-mono, served from the IDE's
 * own origin as `font-src 'self'` requires), so every machine draws the same cells whatever fonts it has.
 */
export const TERMINAL_FONT_FAMILY = '"JetBrains Mono", monospace';
export const TERMINAL_FONT_SIZE = 13;
/** What `document.fonts.load` fetches before xterm.js measures its cells: the regular and the bold face. */
export const TERMINAL_FONT_FACES = [
  `${TERMINAL_FONT_SIZE}px "JetBrains Mono"`,
  `700 ${TERMINAL_FONT_SIZE}px "JetBrains Mono"`,
] as const;

/**
 * The terminal's colours, after the IDE's dark palette (globals.css: --fg, --accent, --ok, --warn, --muted):
 * all 16 ANSI colours, so programs that colour their output look as intended, a cursor in the accent colour
 * that stands out from text, and a selection that keeps text readable.
 */
export const TERMINAL_THEME = {
  background: '#101216',
  foreground: '#d7dae0',
  cursor: '#6aa9ff',
  cursorAccent: '#101216',
  selectionBackground: '#35507a',
  selectionForeground: '#ffffff',
  selectionInactiveBackground: '#2a3446',
  black: '#2c313c',
  red: '#e5484d',
  green: '#5fd38d',
  yellow: '#f0c36a',
  blue: '#6aa9ff',
  magenta: '#c678dd',
  cyan: '#56b6c2',
  white: '#d7dae0',
  brightBlack: '#8b93a1',
  brightRed: '#ff6b6b',
  brightGreen: '#86e3aa',
  brightYellow: '#ffd98a',
  brightBlue: '#94c1ff',
  brightMagenta: '#dba1ea',
  brightCyan: '#82d2dc',
  brightWhite: '#ffffff',
  scrollbarSliderBackground: 'rgba(139, 147, 161, 0.25)',
  scrollbarSliderHoverBackground: 'rgba(139, 147, 161, 0.4)',
  scrollbarSliderActiveBackground: 'rgba(139, 147, 161, 0.55)',
} as const satisfies ITheme;
