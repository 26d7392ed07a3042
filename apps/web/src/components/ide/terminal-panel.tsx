'use client';
import '../../styles/terminal.css';
import { useCallback, useEffect, useRef, useState } from 'react';
import {
  addTerminalTab,
  initialTerminalTabs,
  MAX_TERMINALS,
  parseTerminalTabs,
  removeTerminalTab,
  serializeTerminalTabs,
  setTerminalId,
  type TerminalTabs,
  terminalTabsStorageKey,
} from '../../lib/terminal-tabs';
import { type TerminalControls, type TerminalStatus, TerminalView } from './terminal-view';

function readTabs(sessionId: string): TerminalTabs {
  try {
    return (
      parseTerminalTabs(sessionStorage.getItem(terminalTabsStorageKey(sessionId))) ?? initialTerminalTabs()
    );
  } catch {
    // storage disabled
    return initialTerminalTabs();
  }
}

function writeTabs(sessionId: string, tabs: TerminalTabs): void {
  try {
    sessionStorage.setItem(terminalTabsStorageKey(sessionId), serializeTerminalTabs(tabs));
  } catch {
    // storage disabled or full: the terminals work, a reload just starts new shells
  }
}

/**
 * The session's terminals: up to {@link MAX_TERMINALS} shells, one shown at a time under a row of tabs (the
 * others stay mounted with their socket and scrollback). Which shells are open (their terminal ids, names,
 * order and the shown one) is kept in this browser tab's sessionStorage, so a reload reattaches to the same
 * shells and the server replays their recent output.
 */
export function TerminalPanel({ sessionId, active }: { sessionId: string; active: boolean }) {
  // Read after mount: sessionStorage is the browser's, and the server render must match the first client one.
  const [state, setState] = useState<{ sessionId: string; tabs: TerminalTabs } | null>(null);
  const [statuses, setStatuses] = useState<Record<string, { status: TerminalStatus; detail: string }>>({});
  const controls = useRef(new Map<string, TerminalControls>());
  // A tab to focus once its terminal has mounted (a new one).
  const focusWhenMounted = useRef<string | null>(null);

  useEffect(() => {
    setState({ sessionId, tabs: readTabs(sessionId) });
    setStatuses({});
  }, [sessionId]);

  useEffect(() => {
    if (state) writeTabs(state.sessionId, state.tabs);
  }, [state]);

  const update = useCallback((fn: (tabs: TerminalTabs) => TerminalTabs | undefined) => {
    setState((s) => {
      if (!s) return s;
      const tabs = fn(s.tabs);
      return tabs && tabs !== s.tabs ? { ...s, tabs } : s;
    });
  }, []);

  const show = (key: string) => {
    update((tabs) => (tabs.active === key ? tabs : { ...tabs, active: key }));
    controls.current.get(key)?.focus();
  };
  const add = () => {
    if (!state) return;
    const next = addTerminalTab(state.tabs);
    if (!next) return;
    update(() => next);
    focusWhenMounted.current = next.active;
  };
  const close = (key: string) => {
    controls.current.get(key)?.end();
    update((tabs) => removeTerminalTab(tabs, key));
    setStatuses(({ [key]: _closed, ...rest }) => rest);
    const next = state ? removeTerminalTab(state.tabs, key).active : '';
    if (next) controls.current.get(next)?.focus();
  };

  const tabs = state?.tabs;
  const shown = tabs?.tabs.find((t) => t.key === tabs.active);
  const shownStatus = shown ? statuses[shown.key] : undefined;
  const status = shownStatus?.status ?? 'connecting';
  const detail = shownStatus?.detail ?? '';

  return (
    <div className="terminal-panel">
      <div className="terminal-bar">
        {/* Toggle buttons, not tabs: the bottom panel's "Terminal" tab is the tab of this panel. */}
        <div className="terminal-tabs" role="toolbar" aria-label="Terminals">
          {tabs?.tabs.map((t) => (
            <span key={t.key} className={t.key === tabs.active ? 'terminal-tab active' : 'terminal-tab'}>
              <button
                type="button"
                className="terminal-tab-name"
                aria-pressed={t.key === tabs.active}
                onClick={() => show(t.key)}
              >
                {t.name}
              </button>
              <button
                type="button"
                className="terminal-tab-close"
                aria-label={`Close ${t.name}`}
                title={`Close ${t.name} (ends its shell)`}
                onClick={() => close(t.key)}
              >
                ×
              </button>
            </span>
          ))}
          <button
            type="button"
            className="terminal-add"
            aria-label="New terminal"
            title={
              (tabs?.tabs.length ?? 0) >= MAX_TERMINALS
                ? `At most ${MAX_TERMINALS} terminals; close one to open another`
                : 'New terminal'
            }
            disabled={!tabs || tabs.tabs.length >= MAX_TERMINALS}
            onClick={add}
          >
            +
          </button>
        </div>
        <div className="panel-status" aria-live="polite">
          {shown ? (
            <>
              <span className={`dot dot-${status}`} aria-hidden="true" />
              Terminal: {status}
              {detail && <span className="muted"> — {detail}</span>}
              {(status === 'refused' || status === 'closed') && (
                <button type="button" onClick={() => controls.current.get(shown.key)?.reconnect()}>
                  Reconnect
                </button>
              )}
            </>
          ) : (
            tabs && <span className="muted">No terminal open: + opens one.</span>
          )}
        </div>
      </div>
      {state?.tabs.tabs.map((t) => (
        <TerminalView
          key={`${state.sessionId}:${t.key}`}
          sessionId={state.sessionId}
          terminalId={t.terminalId}
          name={t.name}
          shown={active && t.key === state.tabs.active}
          onStatus={(s, d) =>
            setStatuses((all) =>
              all[t.key]?.status === s && all[t.key]?.detail === d
                ? all
                : { ...all, [t.key]: { status: s, detail: d } },
            )
          }
          onTerminalId={(id) => update((tabs) => setTerminalId(tabs, t.key, id))}
          onControls={(c) => {
            if (!c) {
              controls.current.delete(t.key);
              return;
            }
            controls.current.set(t.key, c);
            if (focusWhenMounted.current === t.key) {
              focusWhenMounted.current = null;
              c.focus();
            }
          }}
        />
      ))}
    </div>
  );
}
