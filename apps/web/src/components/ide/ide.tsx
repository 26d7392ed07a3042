'use client';
import Link from 'next/link';
import { useCallback, useEffect, useRef, useState } from 'react';
import { formatBytes, hasBinaryExtension, LARGE_FILE_BYTES, looksBinary } from '../lib/file-types';
import { api, errorMessage, studioCode } from '../lib/trpc';
import { ActivityFeed } from './activity-feed';
import { CodeEditor } from './code-editor';
import { type ConsoleLine, ConsolePanel } from './console-panel';
import { type Actor, actorLabel, type SessionEvent } from './events';
import { FileTree } from './file-tree';
import { PreviewPane } from './preview-pane';
import { TerminalPanel } from './terminal-panel';
import { TopBar } from './top-bar';
import { useAsync } from './use-async';

interface Tab {
  path: string;
  /** What is on disk as far as we know. */
  saved: string;
  current: string;
  /** Bumped when the editor must be reset to `current` (load, reload from disk). */
  version: number;
  /** Someone else changed (or removed) the file while this tab had unsaved edits. */
  conflict: 'changed' | 'removed' | null;
  /** Why the file is not editable (binary, too large), or null. */
  blocked: string | null;
  size: number;
}

const MAX_EVENTS = 500;
const MAX_LINES = 2000;

/** The IDE for one session: files, editor tabs, terminal, console, preview, activity, watchers, control. */
export function Ide({ sessionId }: { sessionId: string }) {
  const session = useAsync(() => api().sessions.get.query({ sessionId }), sessionId);
  const me = useAsync(() => api().auth.me.query(), '');
  const watchers = useAsync(() => api().events.watchers.query({ sessionId }), sessionId);
  const [tabs, setTabs] = useState<Tab[]>([]);
  const [active, setActive] = useState<string | null>(null);
  const [events, setEvents] = useState<SessionEvent[]>([]);
  const [lines, setLines] = useState<ConsoleLine[]>([]);
  const [refreshKey, setRefreshKey] = useState(0);
  const [bottom, setBottom] = useState<'terminal' | 'console'>('terminal');
  const [notice, setNotice] = useState<string | null>(null);
  const [liveError, setLiveError] = useState<string | null>(null);
  const [controlBusy, setControlBusy] = useState(false);
  const tabsRef = useRef(tabs);
  tabsRef.current = tabs;
  const lineSeq = useRef(0);

  const addLine = useCallback((kind: ConsoleLine['kind'], text: string) => {
    setLines((prev) => [...prev.slice(-(MAX_LINES - 1)), { id: `l${lineSeq.current++}`, kind, text }]);
  }, []);

  const updateTab = useCallback((path: string, fn: (t: Tab) => Tab) => {
    setTabs((prev) => prev.map((t) => (t.path === path ? fn(t) : t)));
  }, []);

  // A file changed on disk (by anyone): reload clean tabs, flag dirty ones.
  const onDiskChange = useCallback(
    async (path: string) => {
      const tab = tabsRef.current.find((t) => t.path === path);
      if (!tab || tab.blocked) return;
      try {
        const file = await api().files.read.query({ sessionId, path });
        const latest = tabsRef.current.find((t) => t.path === path);
        if (!latest || file.content === latest.saved) return;
        if (latest.current === latest.saved) {
          updateTab(path, (t) => ({
            ...t,
            saved: file.content,
            current: file.content,
            version: t.version + 1,
            conflict: null,
          }));
        } else {
          updateTab(path, (t) => ({ ...t, saved: file.content, conflict: 'changed' }));
        }
      } catch (e) {
        if (studioCode(e) === 'NOT_FOUND') updateTab(path, (t) => ({ ...t, conflict: 'removed' }));
      }
    },
    [sessionId, updateTab],
  );

  // A build inside the sandbox can change dozens of files at once: one tree reload per burst, not per event.
  const treeTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const refreshTreeSoon = useCallback(() => {
    if (treeTimer.current !== undefined) return;
    treeTimer.current = setTimeout(() => {
      treeTimer.current = undefined;
      setRefreshKey((k) => k + 1);
    }, 150);
  }, []);
  useEffect(() => () => clearTimeout(treeTimer.current), []);

  // Live events (SSE; the link resumes from the last id after a drop).
  // biome-ignore lint/correctness/useExhaustiveDependencies: one subscription per session; handlers are stable
  useEffect(() => {
    const sub = api().events.subscribe.subscribe(
      { sessionId },
      {
        onStarted: () => setLiveError(null),
        onData: (tracked) => {
          const event = ((tracked as { data?: SessionEvent }).data ?? tracked) as SessionEvent;
          setLiveError(null);
          setEvents((prev) => [...prev.slice(-(MAX_EVENTS - 1)), event]);
          switch (event.type) {
            case 'file.changed':
              refreshTreeSoon();
              // '' (many changed inside the sandbox): every open tab may have.
              if (event.path === '') for (const t of tabsRef.current) void onDiskChange(t.path);
              else void onDiskChange(event.path);
              if (event.to) void onDiskChange(event.to);
              break;
            case 'exec.started':
              addLine('info', `$ ${event.command.join(' ')}`);
              break;
            case 'exec.output':
              addLine(event.stream, event.data.replace(/\n$/, ''));
              break;
            case 'exec.exited':
              addLine(
                'info',
                `[exit ${event.exitCode ?? event.signal ?? '?'}${event.timedOut ? ', timed out' : ''}]`,
              );
              break;
            case 'watcher.joined':
            case 'watcher.left':
              void watchers.reload();
              break;
            case 'control.taken':
            case 'control.released':
            case 'session.status':
              void session.reload();
              addLine('info', `[${event.type}${event.type === 'session.status' ? `: ${event.state}` : ''}]`);
              break;
            case 'gap':
              addLine('info', `[missed ${event.missed ?? 'some'} events]`);
              setRefreshKey((k) => k + 1);
              break;
          }
        },
        onError: (e) => setLiveError(errorMessage(e)),
      },
    );
    return () => sub.unsubscribe();
  }, [sessionId]);

  const openFile = useCallback(
    async (path: string, size: number, force = false) => {
      setNotice(null);
      if (tabsRef.current.some((t) => t.path === path && !t.blocked)) {
        setActive(path);
        return;
      }
      const base: Tab = { path, saved: '', current: '', version: 0, conflict: null, blocked: null, size };
      const block = (reason: string) => {
        setTabs((prev) => [...prev.filter((t) => t.path !== path), { ...base, blocked: reason }]);
        setActive(path);
      };
      if (hasBinaryExtension(path)) return block('binary');
      if (size > LARGE_FILE_BYTES && !force) return block('large');
      try {
        const file = await api().files.read.query({ sessionId, path });
        if (looksBinary(file.content)) return block('binary');
        setTabs((prev) => [
          ...prev.filter((t) => t.path !== path),
          { ...base, saved: file.content, current: file.content, size: file.size },
        ]);
        setActive(path);
      } catch (e) {
        const code = studioCode(e);
        if (code === 'FILE_NOT_TEXT') return block('binary');
        if (code === 'FILE_TOO_LARGE') return block('too-large');
        setNotice(errorMessage(e));
      }
    },
    [sessionId],
  );

  const save = useCallback(
    async (path?: string) => {
      const tab = tabsRef.current.find((t) => t.path === (path ?? active));
      if (!tab || tab.blocked) return;
      const content = tab.current;
      try {
        await api().files.write.mutate({ sessionId, path: tab.path, content });
        updateTab(tab.path, (t) => ({ ...t, saved: content, conflict: null }));
        setNotice(null);
      } catch (e) {
        setNotice(`Could not save ${tab.path}: ${errorMessage(e)}`);
      }
    },
    [active, sessionId, updateTab],
  );

  const closeTab = useCallback((path: string) => {
    setTabs((prev) => {
      const next = prev.filter((t) => t.path !== path);
      setActive((a) => (a === path ? (next[next.length - 1]?.path ?? null) : a));
      return next;
    });
  }, []);

  // Keyboard shortcuts: Ctrl/Cmd+S save, Alt+W close tab, Alt+1..4 focus files / editor / terminal / console.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      // The editor handles its own Ctrl/Cmd+S (and prevents the default): do not save twice.
      if (e.defaultPrevented) return;
      if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 's') {
        e.preventDefault();
        void save();
      } else if (e.altKey && e.key.toLowerCase() === 'w' && active) {
        e.preventDefault();
        closeTab(active);
      } else if (e.altKey && ['1', '2', '3', '4'].includes(e.key)) {
        e.preventDefault();
        if (e.key === '1') document.querySelector<HTMLElement>('.tree-item, .tree-toolbar button')?.focus();
        if (e.key === '2') document.querySelector<HTMLElement>('.cm-content')?.focus();
        if (e.key === '3') {
          setBottom('terminal');
          setTimeout(() => document.querySelector<HTMLElement>('.xterm-helper-textarea')?.focus(), 0);
        }
        if (e.key === '4') {
          setBottom('console');
          setTimeout(() => document.getElementById('console-command')?.focus(), 0);
        }
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [save, closeTab, active]);

  // Warn before leaving with unsaved edits (the browser's own prompt).
  useEffect(() => {
    const onLeave = (e: BeforeUnloadEvent) => {
      if (tabsRef.current.some((t) => t.current !== t.saved)) e.preventDefault();
    };
    window.addEventListener('beforeunload', onLeave);
    return () => window.removeEventListener('beforeunload', onLeave);
  }, []);

  async function toggleControl() {
    if (!session.data) return;
    setControlBusy(true);
    try {
      const next = session.data.control
        ? await api().sessions.releaseControl.mutate({ sessionId })
        : await api().sessions.takeControl.mutate({ sessionId });
      session.setData(next);
    } catch (e) {
      setNotice(errorMessage(e));
    } finally {
      setControlBusy(false);
    }
  }

  if (session.loading && !session.data) {
    return (
      <div className="page">
        <TopBar />
        <p className="muted center" aria-live="polite">
          Loading session…
        </p>
      </div>
    );
  }
  if (session.error || !session.data) {
    return (
      <div className="page">
        <TopBar />
        <div className="card center">
          <p className="error" role="alert">
            {errorMessage(session.error)}
          </p>
          <Link href="/">Back to sessions</Link>
        </div>
      </div>
    );
  }
  const s = session.data;
  const tab = tabs.find((t) => t.path === active) ?? null;
  const uniqueWatchers = (watchers.data ?? []).filter(
    (w, i, all) =>
      all.findIndex(
        (o) =>
          o.actor?.userId === w.actor?.userId &&
          o.actor?.kind === w.actor?.kind &&
          o.actor?.name === w.actor?.name &&
          o.via === w.via,
      ) === i,
  );

  return (
    <div className="ide">
      <TopBar>
        <span className="mono small">{s.id}</span> <span className={`badge state-${s.state}`}>{s.state}</span>{' '}
        <span className="muted small">
          {s.backend} · {s.image}
        </span>
        <span className="control" aria-live="polite">
          {s.control ? (
            <>
              Control: <strong>{s.control.heldBy}</strong>
            </>
          ) : (
            <span className="muted">Nobody holds control</span>
          )}
          <button
            type="button"
            className={s.control ? '' : 'primary'}
            onClick={() => void toggleControl()}
            disabled={controlBusy}
          >
            {s.control ? 'Release control' : 'Take control'}
          </button>
        </span>
        <span className="watchers" title="Watching now">
          <span className="muted small">Watching:</span>{' '}
          {uniqueWatchers.length === 0 ? (
            <span className="muted small">nobody</span>
          ) : (
            uniqueWatchers.map((w) => (
              <span key={w.watcherId} className={`chip actor-${w.actor?.kind ?? 'system'}`}>
                {actorLabel(w.actor as Actor | null, me.data)} ({w.via})
              </span>
            ))
          )}
        </span>
      </TopBar>
      {s.state !== 'running' && (
        <p className="error banner" role="alert">
          This session is {s.state}. Start it from the <Link href="/">dashboard</Link> to use files and the
          terminal.
        </p>
      )}
      {liveError && (
        <p className="error banner" role="alert">
          Live updates interrupted: {liveError} (retrying)
        </p>
      )}
      <div className="ide-grid">
        <aside className="ide-files">
          <h2 className="panel-title">Files</h2>
          <FileTree
            sessionId={sessionId}
            refreshKey={refreshKey}
            onOpen={(p, size) => void openFile(p, size)}
            onRenamed={(from, to) => {
              setTabs((prev) => prev.map((t) => (t.path === from ? { ...t, path: to } : t)));
              setActive((a) => (a === from ? to : a));
            }}
            onRemoved={(p) =>
              setTabs((prev) => prev.filter((t) => t.path !== p && !t.path.startsWith(`${p}/`)))
            }
          />
        </aside>
        <section className="ide-main" aria-label="Editor">
          <div className="tabs" role="tablist" aria-label="Open files">
            {tabs.length === 0 && <span className="muted small tab-empty">No file open</span>}
            {tabs.map((t) => {
              const dirty = t.current !== t.saved;
              return (
                <div key={t.path} className={`tab ${t.path === active ? 'active' : ''}`}>
                  <button
                    type="button"
                    role="tab"
                    aria-selected={t.path === active}
                    onClick={() => setActive(t.path)}
                    title={t.path}
                  >
                    {t.path.split('/').pop()}
                    {dirty && (
                      <span className="dirty" aria-label="unsaved changes" role="img">
                        {' '}
                        ●
                      </span>
                    )}
                  </button>
                  <button
                    type="button"
                    className="tab-close"
                    aria-label={`Close ${t.path}`}
                    onClick={() => closeTab(t.path)}
                  >
                    ×
                  </button>
                </div>
              );
            })}
          </div>
          {notice && (
            <p className="error small banner" role="alert">
              {notice}
            </p>
          )}
          {tab?.conflict && (
            <div className="conflict" role="alert">
              {tab.conflict === 'changed'
                ? `${tab.path} changed on disk while you were editing it.`
                : `${tab.path} was removed on disk.`}{' '}
              <button
                type="button"
                onClick={() =>
                  updateTab(tab.path, (t) => ({
                    ...t,
                    current: t.saved,
                    version: t.version + 1,
                    conflict: null,
                  }))
                }
                disabled={tab.conflict === 'removed'}
              >
                Reload from disk (discard mine)
              </button>{' '}
              <button type="button" onClick={() => void save(tab.path)}>
                Keep mine (save over it)
              </button>
            </div>
          )}
          <div className="editor-area">
            {!tab ? (
              <p className="empty center">
                Open a file from the tree (Alt+1), or create one. Ctrl/Cmd+S saves.
              </p>
            ) : tab.blocked ? (
              <div className="card center">
                <p>
                  {tab.blocked === 'binary'
                    ? `${tab.path} looks binary and is not opened in the editor.`
                    : tab.blocked === 'too-large'
                      ? `${tab.path} is larger than the server lets the editor read.`
                      : `${tab.path} is large (${formatBytes(tab.size)}); the editor may be slow.`}
                </p>
                {tab.blocked === 'large' && (
                  <button
                    type="button"
                    onClick={() => {
                      closeTab(tab.path);
                      void openFile(tab.path, tab.size, true);
                    }}
                  >
                    Open anyway
                  </button>
                )}
                <p className="muted small">Use Download in the file tree to get it.</p>
              </div>
            ) : (
              <CodeEditor
                key={tab.path}
                path={tab.path}
                value={tab.current}
                version={tab.version}
                onChange={(v) => updateTab(tab.path, (t) => ({ ...t, current: v }))}
                onSave={() => void save(tab.path)}
              />
            )}
          </div>
          <div className="bottom">
            <div className="bottom-tabs" role="tablist" aria-label="Bottom panel">
              <button
                type="button"
                role="tab"
                aria-selected={bottom === 'terminal'}
                onClick={() => setBottom('terminal')}
              >
                Terminal
              </button>
              <button
                type="button"
                role="tab"
                aria-selected={bottom === 'console'}
                onClick={() => setBottom('console')}
              >
                Console{lines.length > 0 ? ` (${lines.length})` : ''}
              </button>
            </div>
            <div
              className={bottom === 'terminal' ? 'bottom-panel' : 'bottom-panel hidden'}
              role="tabpanel"
              aria-label="Terminal panel"
            >
              {s.state === 'running' && (
                <TerminalPanel sessionId={sessionId} active={bottom === 'terminal'} />
              )}
            </div>
            <div
              className={bottom === 'console' ? 'bottom-panel' : 'bottom-panel hidden'}
              role="tabpanel"
              aria-label="Console panel"
            >
              <ConsolePanel sessionId={sessionId} lines={lines} onClear={() => setLines([])} />
            </div>
          </div>
        </section>
        <aside className="ide-side">
          <section className="side-preview" aria-label="Preview">
            <h2 className="panel-title">Preview</h2>
            <PreviewPane sessionId={sessionId} />
          </section>
          <section className="side-activity" aria-label="Activity">
            <h2 className="panel-title">Activity</h2>
            <ActivityFeed events={events} me={me.data} />
          </section>
        </aside>
      </div>
    </div>
  );
}
