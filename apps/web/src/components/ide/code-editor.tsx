'use client';
import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands';
import { css } from '@codemirror/lang-css';
import { html } from '@codemirror/lang-html';
import { javascript } from '@codemirror/lang-javascript';
import { json } from '@codemirror/lang-json';
import { markdown } from '@codemirror/lang-markdown';
import { python } from '@codemirror/lang-python';
import {
  bracketMatching,
  defaultHighlightStyle,
  indentOnInput,
  syntaxHighlighting,
} from '@codemirror/language';
import { EditorState, type Extension } from '@codemirror/state';
import { oneDark } from '@codemirror/theme-one-dark';
import {
  drawSelection,
  EditorView,
  highlightActiveLine,
  highlightActiveLineGutter,
  keymap,
  lineNumbers,
} from '@codemirror/view';
import { useEffect, useRef } from 'react';
import { type Language, languageOf } from '../../lib/file-types';
import { useNonce } from '../nonce';
import { onReveal, takeReveal } from './reveal';

function languageExtension(lang: Language): Extension {
  switch (lang) {
    case 'javascript':
      return javascript();
    case 'jsx':
      return javascript({ jsx: true });
    case 'typescript':
      return javascript({ typescript: true });
    case 'tsx':
      return javascript({ typescript: true, jsx: true });
    case 'python':
      return python();
    case 'json':
      return json();
    case 'html':
      return html();
    case 'css':
      return css();
    case 'markdown':
      return markdown();
    default:
      return [];
  }
}

// Chrome's contenteditable can insert U+00A0 for a typed space (e.g. at the end of a highlighted token): turn
// typed non-breaking spaces back into spaces so files never get them by accident. Pasted text is left alone.
const normalizeTypedSpaces = EditorState.transactionFilter.of((tr) => {
  if (!tr.docChanged || !tr.isUserEvent('input.type')) return tr;
  let found = false;
  tr.changes.iterChanges((_fa, _ta, _fb, _tb, inserted) => {
    if (inserted.toString().includes('\u00a0')) found = true;
  });
  if (!found) return tr;
  const changes: { from: number; to: number; insert: string }[] = [];
  tr.changes.iterChanges((from, to, _fb, _tb, inserted) => {
    changes.push({ from, to, insert: inserted.toString().replace(/\u00a0/g, ' ') });
  });
  return [{ changes, selection: tr.selection, userEvent: 'input.type', scrollIntoView: tr.scrollIntoView }];
});

export interface CodeEditorProps {
  path: string;
  /** The document to show; when `version` changes the editor is reset to it. */
  value: string;
  version: number;
  onChange: (value: string) => void;
  onSave: () => void;
}

/**
 * CodeMirror 6, bundled (no CDN): one EditorView per open tab, recreated when the tab or its loaded version
 * changes. Styles go through constructed stylesheets, which the page's CSP allows.
 */
export function CodeEditor({ path, value, version, onChange, onSave }: CodeEditorProps) {
  const host = useRef<HTMLDivElement>(null);
  const nonce = useNonce();
  const handlers = useRef({ onChange, onSave });
  handlers.current = { onChange, onSave };

  // biome-ignore lint/correctness/useExhaustiveDependencies: value is read only when path/version change
  useEffect(() => {
    if (!host.current) return;
    const view = new EditorView({
      parent: host.current,
      state: EditorState.create({
        doc: value,
        extensions: [
          // CodeMirror mounts its styles in a <style> element: it needs this response's CSP nonce.
          ...(nonce ? [EditorView.cspNonce.of(nonce)] : []),
          normalizeTypedSpaces,
          lineNumbers(),
          highlightActiveLineGutter(),
          history(),
          drawSelection(),
          indentOnInput(),
          bracketMatching(),
          highlightActiveLine(),
          syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
          oneDark,
          languageExtension(languageOf(path)),
          keymap.of([
            {
              key: 'Mod-s',
              preventDefault: true,
              run: () => {
                handlers.current.onSave();
                return true;
              },
            },
            indentWithTab,
            ...defaultKeymap,
            ...historyKeymap,
          ]),
          EditorView.updateListener.of((u) => {
            if (u.docChanged) handlers.current.onChange(u.state.doc.toString());
          }),
          EditorView.contentAttributes.of({ 'aria-label': `Editor: ${path}` }),
        ],
      }),
    });
    // A search result or the palette asked for a line of this file: cursor there, scrolled into the middle.
    const show = (line: number) => {
      const at = view.state.doc.line(Math.min(Math.max(1, line), view.state.doc.lines)).from;
      view.dispatch({ selection: { anchor: at }, effects: EditorView.scrollIntoView(at, { y: 'center' }) });
      view.focus();
    };
    const waiting = takeReveal(path);
    if (waiting !== null) show(waiting);
    const stop = onReveal(path, show);
    return () => {
      stop();
      view.destroy();
    };
  }, [path, version, nonce]);

  return <div className="code-editor" ref={host} data-path={path} />;
}
