import { describe, expect, it } from 'vitest';
import { clipboardKeyAction, type KeyLike } from './terminal-keys.ts';

const key = (k: string, code: string, mods: Partial<KeyLike> = {}): KeyLike => ({
  key: k,
  code,
  ctrlKey: false,
  shiftKey: false,
  altKey: false,
  metaKey: false,
  ...mods,
});

describe('clipboard keys in the terminal', () => {
  it('copies with Ctrl+Shift+C and pastes with Ctrl+Shift+V, selection or not', () => {
    for (const selected of [true, false]) {
      expect(clipboardKeyAction(key('C', 'KeyC', { ctrlKey: true, shiftKey: true }), selected)).toBe('copy');
      expect(clipboardKeyAction(key('V', 'KeyV', { ctrlKey: true, shiftKey: true }), selected)).toBe('paste');
    }
  });

  it('copies with Ctrl+C only when text is selected; otherwise Ctrl+C interrupts the shell', () => {
    expect(clipboardKeyAction(key('c', 'KeyC', { ctrlKey: true }), true)).toBe('copy');
    expect(clipboardKeyAction(key('c', 'KeyC', { ctrlKey: true }), false)).toBeNull();
    // Plain Ctrl+V stays the browser's paste (xterm.js handles its paste event).
    expect(clipboardKeyAction(key('v', 'KeyV', { ctrlKey: true }), false)).toBeNull();
  });

  it('leaves every other key to the shell', () => {
    expect(clipboardKeyAction(key('c', 'KeyC'), true)).toBeNull();
    expect(clipboardKeyAction(key('C', 'KeyC', { shiftKey: true }), true)).toBeNull();
    expect(clipboardKeyAction(key('d', 'KeyD', { ctrlKey: true }), true)).toBeNull();
    expect(clipboardKeyAction(key('X', 'KeyX', { ctrlKey: true, shiftKey: true }), true)).toBeNull();
    expect(clipboardKeyAction(key('c', 'KeyC', { ctrlKey: true, altKey: true }), true)).toBeNull();
    expect(clipboardKeyAction(key('c', 'KeyC', { metaKey: true }), true)).toBeNull();
    expect(clipboardKeyAction(key('Control', 'ControlLeft', { ctrlKey: true }), true)).toBeNull();
  });

  it('finds the C and V keys on a non-Latin layout by their position', () => {
    expect(clipboardKeyAction(key('С', 'KeyC', { ctrlKey: true, shiftKey: true }), false)).toBe('copy');
    expect(clipboardKeyAction(key('м', 'KeyV', { ctrlKey: true, shiftKey: true }), false)).toBe('paste');
  });
});
