'use client';
import { useEffect } from 'react';
import type { BottomTab } from './bottom-panel';
import type { EditorTabs } from './use-editor-tabs';

/**
 * Keyboard shortcuts (Ctrl/Cmd+S save, Alt+W close tab, Alt+1..4 focus files / editor / terminal / console,
 * Ctrl/Cmd+Shift+P and Ctrl/Cmd+K the command palette) and the browser's own prompt before leaving with unsaved
 * edits.
 */
export function useIdeShortcuts(
  editor: EditorTabs,
  showBottom: (tab: BottomTab) => void,
  openPalette?: () => void,
): void {
  const { save, close, active, hasUnsaved } = editor;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      // The editor handles its own Ctrl/Cmd+S (and prevents the default): do not save twice.
      if (e.defaultPrevented) return;
      const mod = e.ctrlKey || e.metaKey;
      const key = e.key.toLowerCase();
      if (openPalette && mod && ((e.shiftKey && key === 'p') || (!e.shiftKey && !e.altKey && key === 'k'))) {
        e.preventDefault();
        openPalette();
      } else if (mod && key === 's') {
        e.preventDefault();
        void save();
      } else if (e.altKey && e.key.toLowerCase() === 'w' && active) {
        e.preventDefault();
        close(active);
      } else if (e.altKey && ['1', '2', '3', '4'].includes(e.key)) {
        e.preventDefault();
        if (e.key === '1') document.querySelector<HTMLElement>('.tree-item, .tree-toolbar button')?.focus();
        if (e.key === '2') document.querySelector<HTMLElement>('.cm-content')?.focus();
        if (e.key === '3') {
          showBottom('terminal');
          setTimeout(() => document.querySelector<HTMLElement>('.xterm-helper-textarea')?.focus(), 0);
        }
        if (e.key === '4') {
          showBottom('console');
          setTimeout(() => document.getElementById('console-command')?.focus(), 0);
        }
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [save, close, active, showBottom, openPalette]);

  useEffect(() => {
    const onLeave = (e: BeforeUnloadEvent) => {
      if (hasUnsaved()) e.preventDefault();
    };
    window.addEventListener('beforeunload', onLeave);
    return () => window.removeEventListener('beforeunload', onLeave);
  }, [hasUnsaved]);
}
