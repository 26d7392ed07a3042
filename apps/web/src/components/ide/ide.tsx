'use client';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import Link from 'next/link';
import { useCallback, useEffect, useRef, useState } from 'react';
import { secretsLabel } from '../../lib/secrets';
import { errorMessage, useTRPC } from '../../lib/trpc';
import { ErrorBox, type Failure } from '../templates/template-parts';
import { TopBar } from '../top-bar';
import { ActivityFeed } from './activity-feed';
import { BottomPanel, type BottomTab } from './bottom-panel';
import { ControlBar } from './control-bar';
import { EditorTabs } from './editor-tabs';
import { FileTree } from './file-tree';
import { NetworkBadge, NetworkPanel } from './network-panel';
import { PreviewPane } from './preview-pane';
import {
  ForkPanel,
  SessionActions,
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
  const [actionError, setActionError] = useState<Failure | null>(null);
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
  useIdeShortcuts(editor, setBottom);

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
          <p className="error" role="alert">
            {errorMessage(session.error)}
          </p>
          <Link href="/">Back to sessions</Link>
        </div>
      </div>
    );
  }
  const s = session.data;

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
          <ErrorBox error={actionError} />
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
      {s.state !== 'running' && s.state !== 'paused' && (
        <p className="error banner" role="alert">
          This session is {s.state}. Start it from the <Link href="/">dashboard</Link> to use files and the
          terminal.
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
      <div className="ide-grid">
        <aside className="ide-files">
          <h2 className="panel-title">Files</h2>
          <FileTree
            sessionId={sessionId}
            onOpen={(p, size) => void editor.open(p, size)}
            onRenamed={editor.renamed}
            onRemoved={editor.removed}
          />
        </aside>
        <section className="ide-main" aria-label="Editor">
          <EditorTabs editor={editor} />
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
        </section>
        <aside className="ide-side">
          <section className="side-preview" aria-label="Preview">
            <h2 className="panel-title">Preview</h2>
            <PreviewPane sessionId={sessionId} />
          </section>
          <section className="side-activity" aria-label="Activity">
            <h2 className="panel-title">Activity</h2>
            <ActivityFeed events={live.events} me={me.data} />
          </section>
        </aside>
      </div>
    </div>
  );
}
