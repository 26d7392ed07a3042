/** A line to show in the editor once the file's editor is there (search results, the palette). */
interface Reveal {
  path: string;
  line: number;
}

const EVENT = 'studio:reveal-line';
let pending: Reveal | null = null;

/**
 * Asks the editor of `path` to put its cursor on `line` (1-based) and scroll it into view: now, if that editor
 * is open, or when it opens (the file is often still being read).
 */
export function requestReveal(path: string, line: number): void {
  pending = { path, line };
  window.dispatchEvent(new CustomEvent<Reveal>(EVENT, { detail: pending }));
}

/** The line waiting for `path`'s editor, taken (so it is shown once). */
export function takeReveal(path: string): number | null {
  if (pending?.path !== path) return null;
  const { line } = pending;
  pending = null;
  return line;
}

/** Calls `show` with each line asked for `path` while subscribed; returns the unsubscribe. */
export function onReveal(path: string, show: (line: number) => void): () => void {
  const listener = (event: Event) => {
    const detail = (event as CustomEvent<Reveal>).detail;
    if (detail.path !== path) return;
    pending = null;
    show(detail.line);
  };
  window.addEventListener(EVENT, listener);
  return () => window.removeEventListener(EVENT, listener);
}
