'use client';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import Link from 'next/link';
import { useCallback, useEffect, useRef, useState } from 'react';
import { secretsLabel } from '../../lib/secrets';
import { type HumanError, humanError, useTRPC } from '../../lib/trpc';
import { TopBar } from '../top-bar';
import { ActivityFeed } from './activity-feed';
import { BottomPanel, type BottomTab } from './bottom-panel';
import { CommandPalette, type PaletteAction } from './command-palette';
import { ControlBar } from './control-bar';
import { EditorTabs } from './editor-tabs';
import { ErrorNote } from './error-note';
import { FileTree } from './file-tree';
import { IdeLayout, type IdeLayoutHandle } from './ide-layout';
import { NetworkBadge, NetworkPanel } from './network-panel';
import { PreviewPane } from './preview-pane';
import { requestReveal } from './reveal';
import { SearchPanel } from './search-panel';
import {
  ForkPanel,
  isGone,
  SessionActions,
  SessionEnded,
  type SessionPanelKind,
  SnapshotPanel,
  usePauseResume,
  useSaveSupport,
} from './session-actions';
import { useEditorTabs } from './use-editor-tabs';
import { useIdeShortcuts } from './use-ide-shortcuts';
import { useSessionEvents } from './use-session-events';
import { WatchersList } from './watchers-list';

/**
 * The IDE for one session: files, editor tabs, terminal, console, preview, activity, watchers, control; pause and
 * resume, fork and snapshot (issue 20).
 */
export function Ide({ sessionId }: { sessionId: string }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const session = useQuery(trpc.sessions.get.queryOptions({ sessionId }));
  const me = useQuery(trpc.auth.me.queryOptions());
  const editor = useEditorTabs(sessionId);
  const [bottom, setBottom] = useState<BottomTab>('terminal');
  const [networkOpen, setNetworkOpen] = useState(false);
  const [panel, setPanel] = useState<SessionPanelKind>(null);
  const [actionError, setActionError] = useState<HumanError | null>(null);
  const layout = useRef<IdeLayoutHandle>(null);
  const [sidebarView, setSidebarView] = useState<'files' | 'search'>('files');
  const [paletteOpen, setPaletteOpen] = useState(false);
  const [newFileRequest, setNewFileRequest] = useState(0);
  const searchInput = useRef<HTMLInputElement>(null);
  const openPalette = useCallback(() => setPaletteOpen(true), []);
  const pauseResume = usePauseResume(sessionId, setActionError);
  const support = useSaveSupport(session.data?.backend ?? '');

  const reloadTree = useCallback(
    () => void queryClient.invalidateQueries(trpc.files.list.queryFilter({ sessionId })),
    [queryClient, trpc, sessionId],
  );
  // A build inside the sandbox can change dozens of files at once: one tree reload per burst, not per event.
  const treeTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const reloadTreeSoon = useCallback(() => {
    if (treeTimer.current !== undefined) return;
    treeTimer.current = setTimeout(() => {
      treeTimer.current = undefined;
      reloadTree();
    }, 150);
  }, [reloadTree]);
  useEffect(() => () => clearTimeout(treeTimer.current), []);

  const live = useSessionEvents(sessionId, {
    onFileChanged: (path, to) => {
      reloadTreeSoon();
      // '' (many changed inside the sandbox): every open tab may have.
      if (path === '') editor.allChanged();
      else void editor.diskChanged(path);
      if (to) void editor.diskChanged(to);
    },
    onGap: reloadTree,
  });
  useIdeShortcuts(editor, setBottom, openPalette);
  const openAtLine = (path: string, line: number) => {
    requestReveal(path, line);
    void editor.open(path, 0);
  };
  const paletteActions: PaletteAction[] = [
    {
      id: 'new-file',
      label: 'New file',
      run: () => {
        layout.current?.show('sidebar');
        setSidebarView('files');
        setNewFileRequest((n) => n + 1);
      },
    },
    { id: 'save', label: 'Save', shortcut: 'Ctrl+S', run: () => void editor.save() },
    {
      id: 'search',
      label: 'Search in files',
      run: () => {
        layout.current?.show('sidebar');
        setSidebarView('search');
        setTimeout(() => searchInput.current?.focus(), 0);
      },
    },
    { id: 'toggle-sidebar', label: 'Toggle sidebar', run: () => layout.current?.toggle('sidebar') },
    { id: 'toggle-bottom', label: 'Toggle bottom panel', run: () => layout.current?.toggle('bottom') },
    { id: 'toggle-side', label: 'Toggle preview and activity', run: () => layout.current?.toggle('side') },
    { id: 'terminal', label: 'Show terminal', shortcut: 'Alt+3', run: () => setBottom('terminal') },
    { id: 'console', label: 'Show console', shortcut: 'Alt+4', run: () => setBottom('console') },
  ];

  if (session.isPending) {
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
          <ErrorNote error={humanError(session.error)} />
          <Link href="/">Back to the dashboard</Link>
        </div>
      </div>
    );
  }
  const s = session.data;
  // Stopped, destroyed or failed: only what works without a running sandbox (no control, files or terminal).
  if (s.state === 'stopped' || isGone(s.state)) {
    return (
      <div className="page">
        <TopBar>
          <span className="mono small">{s.id}</span>{' '}
          <span className={`badge state-${s.state}`}>{s.state}</span>
        </TopBar>
        <SessionEnded sessionId={sessionId} state={s.state} />
      </div>
    );
  }

  return (
    <div className="ide">
      <TopBar>
        <span className="mono small">{s.id}</span> <span className={`badge state-${s.state}`}>{s.state}</span>{' '}
        <span className="muted small">
          {s.backend} · {s.image}
        </span>
        {s.parentId && (
          <span className="muted small">
            fork of{' '}
            <Link href={`/s/${s.parentId}`} className="session-link">
              {s.parentId}
            </Link>
          </span>
        )}
        {s.fromSnapshotId && !s.parentId && (
          <span className="muted small" title="Made from this snapshot (Snapshots page)">
            from <span className="mono">{s.fromSnapshotId}</span>
          </span>
        )}
        <SessionActions
          state={s.state}
          support={support}
          control={{
            ...pauseResume,
            pause: () => {
              setActionError(null);
              pauseResume.pause();
            },
            resume: () => {
              setActionError(null);
              pauseResume.resume();
            },
          }}
          panel={panel}
          onPanel={setPanel}
        />
        <NetworkBadge
          network={s.network}
          expanded={networkOpen}
          onToggle={() => setNetworkOpen((open) => !open)}
        />
        {s.secrets.length > 0 && (
          <span
            className="badge secrets-badge"
            title="Its programs see a placeholder in these environment variables; the egress proxy puts the value into requests to each secret's hosts. Values are never shown."
          >
            {secretsLabel(s.secrets)}
          </span>
        )}
        <Link
          href={`/s/${sessionId}/replay`}
          className="small"
          title="The session's recording: its terminals and a timeline of who did what"
        >
          Replay
        </Link>
        <ControlBar sessionId={sessionId} heldBy={s.control?.heldBy ?? null} onError={editor.setNotice} />
        <WatchersList sessionId={sessionId} />
      </TopBar>
      {networkOpen && (
        <NetworkPanel sessionId={sessionId} network={s.network} onClose={() => setNetworkOpen(false)} />
      )}
      {panel === 'fork' && (
        <ForkPanel
          sessionId={sessionId}
          paused={s.state === 'paused'}
          support={support}
          onClose={() => setPanel(null)}
        />
      )}
      {panel === 'snapshot' && (
        <SnapshotPanel
          sessionId={sessionId}
          paused={s.state === 'paused'}
          support={support}
          onClose={() => setPanel(null)}
        />
      )}
      {actionError && (
        <div className="banner action-error">
          <ErrorNote error={actionError} />
        </div>
      )}
      {s.state === 'paused' && (
        <p className="banner paused-line" role="status">
          <strong>Paused</strong>
          {s.pausedAt ? (
            <>
              {' '}
              at <time dateTime={s.pausedAt}>{new Date(s.pausedAt).toLocaleTimeString()}</time>
            </>
          ) : null}
          : it holds no memory on the server
          {support === null ? '' : support.memory ? ', and its programs carry on where they were' : ''}. Any
          action resumes it: opening a file, the terminal, a command or a preview.
        </p>
      )}
      {s.state === 'creating' && (
        <p className="banner" role="status">
          This session is starting: files and the terminal work once it is running.
        </p>
      )}
      {live.live && (
        <p className="error banner" role="alert">
          {live.live.retrying ? (
            <>Live updates interrupted: {live.live.error} (retrying)</>
          ) : (
            <>
              Live updates stopped: {live.live.error}{' '}
              <button type="button" onClick={live.reconnect}>
                Reconnect
              </button>
            </>
          )}
        </p>
      )}
      <IdeLayout
        sessionId={sessionId}
        handle={layout}
        sidebar={
          <aside className="ide-sidebar ide-panel" aria-label="Sidebar">
            <div className="sidebar-tabs" role="tablist" aria-label="Sidebar">
              {(['files', 'search'] as const).map((view) => (
                <button
                  key={view}
                  type="button"
                  role="tab"
                  id={`sidebar-tab-${view}`}
                  aria-selected={sidebarView === view}
                  aria-controls={`sidebar-${view}`}
                  onClick={() => setSidebarView(view)}
                >
                  {view === 'files' ? 'Files' : 'Search'}
                </button>
              ))}
            </div>
            <div
              id="sidebar-files"
              role="tabpanel"
              aria-labelledby="sidebar-tab-files"
              className="sidebar-view"
              hidden={sidebarView !== 'files'}
            >
              <FileTree
                sessionId={sessionId}
                onOpen={(p, size) => void editor.open(p, size)}
                onRenamed={editor.renamed}
                onRemoved={editor.removed}
                newFileRequest={newFileRequest}
              />
            </div>
            <div
              id="sidebar-search"
              role="tabpanel"
              aria-labelledby="sidebar-tab-search"
              className="sidebar-view"
              hidden={sidebarView !== 'search'}
            >
              <SearchPanel sessionId={sessionId} onOpen={openAtLine} inputRef={searchInput} />
            </div>
          </aside>
        }
        editor={<EditorTabs editor={editor} />}
        bottom={
          <BottomPanel
            sessionId={sessionId}
            running={s.state === 'running'}
            paused={s.state === 'paused'}
            onResume={pauseResume.resume}
            shown={bottom}
            onShow={setBottom}
            lines={live.lines}
            onClearLines={live.clearLines}
          />
        }
        preview={<PreviewPane sessionId={sessionId} />}
        activity={<ActivityFeed events={live.events} me={me.data} older={live.older} />}
      />
      {paletteOpen && (
        <CommandPalette
          sessionId={sessionId}
          actions={paletteActions}
          onOpenFile={(path) => void editor.open(path, 0)}
          onClose={() => setPaletteOpen(false)}
        />
      )}
    </div>
  );
}
