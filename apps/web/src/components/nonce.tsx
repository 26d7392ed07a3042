'use client';
import { createContext, type ReactNode, useContext } from 'react';

const NonceContext = createContext<string | undefined>(undefined);

let stamping: string | undefined;

/**
 * Gives every `<style>` element this page's scripts create the document's CSP nonce, at creation: before it is
 * inserted, which is when the browser checks it. xterm.js creates `<style>` elements (its theme, cell sizes,
 * scrollbars) and takes no nonce (xtermjs/xterm.js#4445), so the CSP refused them and the terminal was drawn
 * without them. Only scripts the CSP already let run call createElement; markup injected into the page does not,
 * and gets no nonce. The first nonce seen is kept: it is the one of the document's own CSP.
 */
function stampStyleNonces(nonce: string): void {
  if (stamping !== undefined) return;
  stamping = nonce;
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function (
    this: Document,
    tagName: string,
    options?: ElementCreationOptions,
  ): HTMLElement {
    const element = create.call(this, tagName, options);
    if (element.localName === 'style') element.setAttribute('nonce', nonce);
    return element;
  } as typeof create;
}

/** Makes this response's CSP nonce available to client code that must create <style> elements (CodeMirror). */
export function NonceProvider({ nonce, children }: { nonce: string | undefined; children: ReactNode }) {
  // In the browser, before any child's effect runs (the terminal opens in one).
  if (typeof window !== 'undefined' && nonce) stampStyleNonces(nonce);
  return <NonceContext.Provider value={nonce}>{children}</NonceContext.Provider>;
}

export const useNonce = () => useContext(NonceContext);
