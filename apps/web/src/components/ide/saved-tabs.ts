import { isCanonicalWorkspacePath } from '@studio/policy/paths';

/** The open editor tabs of one session as the browser keeps them (issue 22): paths, sizes, the active one. */
export interface SavedTabs {
  tabs: { path: string; size: number }[];
  active: string | null;
}

/** More are not reopened: a page load must not read hundreds of files. */
export const MAX_SAVED_TABS = 30;

/** The localStorage key of a session's tabs. */
export function savedTabsKey(sessionId: string): string {
  return `studio.ide.tabs.${sessionId}`;
}

/** What is written for `tabs`: a version, then paths and sizes in tab order, and the active path. */
export function serializeTabs(
  tabs: readonly { path: string; size: number }[],
  active: string | null,
): string {
  const kept = tabs.slice(0, MAX_SAVED_TABS).map((t) => ({ path: t.path, size: t.size }));
  return JSON.stringify({ v: 1, tabs: kept, active: kept.some((t) => t.path === active) ? active : null });
}

/**
 * Reads back what {@link serializeTabs} wrote, or null. Anything else in the browser's storage (another version,
 * an edit by hand, another page's value) is checked, never trusted: only canonical workspace paths (no root, no
 * `..`, no control characters), each once, with a whole non-negative size; the active one only if it is among them.
 */
export function parseSavedTabs(raw: string | null): SavedTabs | null {
  if (raw === null || raw.length > 200_000) return null;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const { v, tabs, active } = value as { v?: unknown; tabs?: unknown; active?: unknown };
  if (v !== 1 || !Array.isArray(tabs)) return null;
  const out: SavedTabs['tabs'] = [];
  for (const t of tabs.slice(0, MAX_SAVED_TABS)) {
    if (typeof t !== 'object' || t === null) continue;
    const { path, size } = t as { path?: unknown; size?: unknown };
    if (typeof path !== 'string' || path === '' || !isCanonicalWorkspacePath(path)) continue;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) continue;
    if (out.some((o) => o.path === path)) continue;
    out.push({ path, size });
  }
  const activePath = typeof active === 'string' && out.some((t) => t.path === active) ? active : null;
  return { tabs: out, active: activePath };
}
