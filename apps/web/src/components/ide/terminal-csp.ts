import type { Terminal } from '@xterm/xterm';

interface RowFactory {
  _addStyle?: (element: HTMLElement, style: string) => void;
}

/**
 * xterm.js's DOM renderer colours some cells through a style attribute (`setAttribute('style', …)`): selected
 * cells, 24-bit colours, the selection's foreground. The IDE's CSP (`style-src` without 'unsafe-inline') refuses
 * style attributes, so each such cell was a CSP violation and lost its colour (a selection drawn only by its
 * overlay, true-colour output in the default colour). Set through the CSSOM (`element.style`), which the CSP
 * does not govern, the same styles apply. Nothing else gains from it: only xterm.js's own renderer, a script
 * the CSP already let run, sets its computed colours this way; markup put into the page is parsed as before and
 * its style attributes stay refused. This reaches into xterm.js's internals (there is no public hook, as the fit
 * addon also does): with another version where they are not found, nothing changes. Call after `open`; true
 * when the renderer was adjusted.
 */
export function styleCellsThroughCssom(term: Terminal): boolean {
  const core = (term as unknown as { _core?: { _renderService?: { _renderer?: { value?: unknown } } } })
    ._core;
  const renderer = core?._renderService?._renderer?.value as { _rowFactory?: RowFactory } | undefined;
  const factory = renderer?._rowFactory;
  if (!factory || typeof factory._addStyle !== 'function') return false;
  factory._addStyle = (element, style) => {
    element.style.cssText += `${style};`;
  };
  return true;
}
