/** At most this many terminals per session in one page: each is a shell in the sandbox. */
export const MAX_TERMINALS = 4;

/** One terminal tab: `key` names it in the page, `terminalId` is its shell on the server once it has one. */
export interface TerminalTab {
  key: string;
  name: string;
  terminalId?: string;
}

/** A session's terminal tabs in their order, and which one is shown. */
export interface TerminalTabs {
  tabs: TerminalTab[];
  active: string;
}

const KEY = /^t\d{1,6}$/;
// The API's terminal ids (apps/api/src/terminal/terminal.ts): a different shape is not one to reattach to.
const TERMINAL_ID = /^trm_[A-Za-z0-9_-]{22}$/;
const NAME_MAX = 40;

/** Where a session's tabs are kept: sessionStorage, so a reload of this browser tab finds its shells again. */
export function terminalTabsStorageKey(sessionId: string): string {
  return `studio.terminals.${sessionId}`;
}

/** A first terminal, for a session with none kept. */
export function initialTerminalTabs(): TerminalTabs {
  return { tabs: [{ key: 't1', name: 'Terminal 1' }], active: 't1' };
}

/**
 * The tabs kept in sessionStorage, read back defensively: storage is the page's to write but anything (another
 * version of the IDE, an extension, a person in devtools) may have left something else there. Entries that do not
 * have the expected shape are dropped one by one, keys are unique, at most {@link MAX_TERMINALS} are kept, and an
 * unknown active key falls back to the first tab. Undefined when nothing usable is left.
 */
export function parseTerminalTabs(raw: string | null | undefined): TerminalTabs | undefined {
  if (!raw) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { tabs, active } = value as { tabs?: unknown; active?: unknown };
  if (!Array.isArray(tabs)) return undefined;
  const out: TerminalTab[] = [];
  for (const item of tabs) {
    if (out.length >= MAX_TERMINALS) break;
    if (typeof item !== 'object' || item === null) continue;
    const { key, name, terminalId } = item as { key?: unknown; name?: unknown; terminalId?: unknown };
    if (typeof key !== 'string' || !KEY.test(key) || out.some((t) => t.key === key)) continue;
    const tab: TerminalTab = {
      key,
      name:
        typeof name === 'string' && name.trim() !== '' && name.length <= NAME_MAX
          ? name
          : `Terminal ${out.length + 1}`,
    };
    if (typeof terminalId === 'string' && TERMINAL_ID.test(terminalId)) tab.terminalId = terminalId;
    out.push(tab);
  }
  const first = out[0];
  if (!first) return undefined;
  return {
    tabs: out,
    active: typeof active === 'string' && out.some((t) => t.key === active) ? active : first.key,
  };
}

/** What {@link parseTerminalTabs} reads back. */
export function serializeTerminalTabs(state: TerminalTabs): string {
  return JSON.stringify({
    tabs: state.tabs.map((t) => ({
      key: t.key,
      name: t.name,
      ...(t.terminalId ? { terminalId: t.terminalId } : {}),
    })),
    active: state.active,
  });
}

/**
 * A new tab after the others: the next unused key, and the lowest `Terminal N` name not in use (closing
 * Terminal 1 of two and opening another gives a new Terminal 1). Undefined at {@link MAX_TERMINALS}.
 */
export function addTerminalTab(state: TerminalTabs): TerminalTabs | undefined {
  if (state.tabs.length >= MAX_TERMINALS) return undefined;
  const keys = state.tabs.map((t) => Number(t.key.slice(1)));
  const key = `t${Math.max(0, ...keys) + 1}`;
  const names = new Set(state.tabs.map((t) => t.name));
  let n = 1;
  while (names.has(`Terminal ${n}`)) n++;
  return { tabs: [...state.tabs, { key, name: `Terminal ${n}` }], active: key };
}

/** Without the tab `key`; when it was shown, its right neighbour is shown instead (else its left one). */
export function removeTerminalTab(state: TerminalTabs, key: string): TerminalTabs {
  const index = state.tabs.findIndex((t) => t.key === key);
  if (index < 0) return state;
  const tabs = state.tabs.filter((t) => t.key !== key);
  const active = state.active === key ? (tabs[index]?.key ?? tabs[index - 1]?.key ?? '') : state.active;
  return { tabs, active };
}

/** With tab `key`'s shell set (its id once ready) or cleared (the shell is gone); the same object if unchanged. */
export function setTerminalId(
  state: TerminalTabs,
  key: string,
  terminalId: string | undefined,
): TerminalTabs {
  const tab = state.tabs.find((t) => t.key === key);
  if (!tab || tab.terminalId === terminalId) return state;
  return {
    ...state,
    tabs: state.tabs.map((t) => {
      if (t.key !== key) return t;
      const { terminalId: _old, ...rest } = t;
      return terminalId ? { ...rest, terminalId } : rest;
    }),
  };
}
