/** The parts of a KeyboardEvent {@link clipboardKeyAction} looks at. */
export interface KeyLike {
  key: string;
  code: string;
  ctrlKey: boolean;
  shiftKey: boolean;
  altKey: boolean;
  metaKey: boolean;
}

// The letter a key stands for: the layout's when it is a Latin letter, else the physical key's (a Cyrillic
// layout types `с` on the C key, and Ctrl+Shift+C should still copy there).
function letter(event: KeyLike): string {
  if (/^[a-z]$/i.test(event.key)) return event.key.toLowerCase();
  const m = /^Key([A-Z])$/.exec(event.code);
  return m?.[1] ? m[1].toLowerCase() : '';
}

/**
 * What a key does in the terminal instead of going to the shell, as in desktop terminals: Ctrl+Shift+C copies
 * the selection, Ctrl+Shift+V pastes, and Ctrl+C copies when text is selected (without a selection it is the
 * shell's interrupt). Null: the key goes to the shell. Cmd on macOS is left to the browser (its copy and paste
 * events, which xterm.js handles).
 */
export function clipboardKeyAction(event: KeyLike, hasSelection: boolean): 'copy' | 'paste' | null {
  if (!event.ctrlKey || event.altKey || event.metaKey) return null;
  const l = letter(event);
  if (event.shiftKey) {
    if (l === 'c') return 'copy';
    if (l === 'v') return 'paste';
    return null;
  }
  return l === 'c' && hasSelection ? 'copy' : null;
}
