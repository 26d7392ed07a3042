'use client';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import Link from 'next/link';
import { type FormEvent, useEffect, useRef, useState } from 'react';
import { formatBytes } from '../../lib/file-types';
import { MAX_FORKS, type Snapshot, snapshotNameProblem, suggestedSnapshotName } from '../../lib/snapshots';
import { type HumanError, humanError, useTRPC } from '../../lib/trpc';
import { ErrorNote, pageProblem } from './error-note';

/** The form open under the session header: fork, snapshot, or none. */
export type SessionPanelKind = 'fork' | 'snapshot' | null;

/** What the session's backend can do with a paused or copied session, once `backends.list` has answered. */
export interface SaveSupport {
  /** Pause, fork and snapshots are possible (the backend's `snapshots` capability). */
  snapshots: boolean;
  /** A pause, fork or snapshot carries memory and running programs (`checkpoint`); false: files only. */
  memory: boolean;
}

/** Pause and resume of the session (`sessions.pause` / `sessions.resume`), whose answer replaces the cached one. */
export function usePauseResume(sessionId: string, onError: (failure: HumanError) => void) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const key = trpc.sessions.get.queryKey({ sessionId });
  const failed = (e: unknown) => {
    onError(humanError(e));
    // A restore that failed leaves the session stopped: show it as it is now.
    void queryClient.invalidateQueries(trpc.sessions.get.queryFilter({ sessionId }));
  };
  const pause = useMutation(
    trpc.sessions.pause.mutationOptions({
      onSuccess: (session) => queryClient.setQueryData(key, session),
      onError: failed,
    }),
  );
  const resume = useMutation(
    trpc.sessions.resume.mutationOptions({
      onSuccess: (session) => queryClient.setQueryData(key, session),
      onError: failed,
    }),
  );
  return {
    pause: () => pause.mutate({ sessionId }),
    resume: () => resume.mutate({ sessionId }),
    pausing: pause.isPending,
    resuming: resume.isPending,
  };
}

export type PauseResume = ReturnType<typeof usePauseResume>;

/** Whether the session's backend saves sandboxes (and their memory); null until `backends.list` answers. */
export function useSaveSupport(backend: string): SaveSupport | null {
  const trpc = useTRPC();
  const backends = useQuery(trpc.backends.list.queryOptions());
  const info = backends.data?.find((b) => b.name === backend);
  if (!info) return null;
  return { snapshots: info.capabilities.snapshots, memory: info.capabilities.checkpoint };
}

/**
 * Pause / Resume, Fork and Snapshot in the session header. Pause saves the session and releases its memory on
 * the server (any later use resumes it); Fork and Snapshot open their forms under the header.
 */
export function SessionActions({
  state,
  support,
  control,
  panel,
  onPanel,
}: {
  state: string;
  support: SaveSupport | null;
  control: PauseResume;
  panel: SessionPanelKind;
  onPanel: (panel: SessionPanelKind) => void;
}) {
  const paused = state === 'paused';
  const usable = state === 'running' || paused;
  // Until the backends are listed, the API decides (UNSUPPORTED says why).
  const unsupported = support !== null && !support.snapshots;
  const why = unsupported
    ? "This session's backend cannot pause, fork or snapshot sessions"
    : usable
      ? null
      : `The session is ${state}`;
  const busy = control.pausing || control.resuming;
  const toggle = (kind: 'fork' | 'snapshot') => onPanel(panel === kind ? null : kind);
  return (
    <span className="session-actions">
      {paused ? (
        <button
          type="button"
          className="primary"
          onClick={control.resume}
          disabled={busy}
          title="Resume the session now (any action on it would too)"
        >
          {control.resuming ? 'Resuming…' : 'Resume'}
        </button>
      ) : (
        <button
          type="button"
          onClick={control.pause}
          disabled={busy || state !== 'running' || unsupported}
          title={
            why ??
            'Save the session and release its memory on the server; opening a file, the terminal or a command resumes it'
          }
        >
          {control.pausing ? 'Pausing…' : 'Pause'}
        </button>
      )}
      <button
        type="button"
        onClick={() => toggle('fork')}
        disabled={!usable || unsupported || busy}
        aria-expanded={panel === 'fork'}
        aria-controls="fork-panel"
        title={why ?? 'Copy this session into new sessions, to try alternatives side by side'}
      >
        Fork
      </button>
      <button
        type="button"
        onClick={() => toggle('snapshot')}
        disabled={!usable || unsupported || busy}
        aria-expanded={panel === 'snapshot'}
        aria-controls="snapshot-panel"
        title={why ?? 'Keep this session as it is now, to start new sessions from later'}
      >
        Snapshot
      </button>
    </span>
  );
}

/** "its files and running programs" / "its files": what a pause, fork or snapshot of this session keeps. */
function kept(support: SaveSupport | null): string {
  if (support === null) return 'its files (and, where the server saves memory, its running programs)';
  return support.memory ? 'its files and its running programs' : 'its files (programs start afresh)';
}

/**
 * The fork form: how many copies (1..{@link MAX_FORKS}), then `sessions.fork` and a link to each new session.
 * Each fork is a session of the owner's and counts against their live-session limit.
 */
export function ForkPanel({
  sessionId,
  paused,
  support,
  onClose,
}: {
  sessionId: string;
  paused: boolean;
  support: SaveSupport | null;
  onClose: () => void;
}) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [count, setCount] = useState('1');
  const [forks, setForks] = useState<string[] | null>(null);
  const [error, setError] = useState<HumanError | null>(null);
  const first = useRef<HTMLInputElement>(null);
  useEffect(() => first.current?.focus(), []);
  const fork = useMutation(
    trpc.sessions.fork.mutationOptions({
      onSuccess: (made) => {
        setForks(made.map((s) => s.id));
        void queryClient.invalidateQueries(trpc.sessions.list.queryFilter());
      },
      onError: (e) => setError(humanError(e)),
    }),
  );
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    const n = Number(count);
    if (!Number.isInteger(n) || n < 1 || n > MAX_FORKS) {
      setError(pageProblem(`Fork into 1 to ${MAX_FORKS} sessions.`));
      return;
    }
    setForks(null);
    fork.mutate({ sessionId, count: n });
  };
  return (
    <section id="fork-panel" className="session-panel" aria-labelledby="fork-title">
      <form className="session-form" onSubmit={submit}>
        <h2 id="fork-title" className="panel-title">
          Fork
        </h2>
        <p className="muted small session-hint">
          Each fork is a new session of yours, a copy of this one as it is now: {kept(support)}. Work in each
          one separately, to try alternatives side by side. This session runs on
          {paused ? ' (forking resumes it)' : ''}. Forks count against your limit of live sessions.
        </p>
        <label htmlFor="fork-count">How many forks</label>
        <input
          id="fork-count"
          ref={first}
          type="number"
          min={1}
          max={MAX_FORKS}
          value={count}
          onChange={(e) => setCount(e.target.value)}
          className="count-input"
        />
        {error && <ErrorNote error={error} />}
        <div className="session-form-actions">
          <button type="submit" className="primary" disabled={fork.isPending}>
            {fork.isPending ? 'Forking…' : 'Fork'}
          </button>
          <button type="button" onClick={onClose}>
            Close
          </button>
        </div>
        {forks && (
          <div role="status" aria-label="Forks">
            <p className="session-hint">
              {forks.length === 1 ? 'Made 1 fork:' : `Made ${forks.length} forks:`}
            </p>
            <ul className="fork-list">
              {forks.map((id) => (
                <li key={id}>
                  <Link href={`/s/${id}`} className="session-link" aria-label={`Open fork ${id}`}>
                    {id}
                  </Link>
                </li>
              ))}
            </ul>
          </div>
        )}
      </form>
    </section>
  );
}

/**
 * The snapshot form: a name (a-z 0-9 -, a dated one offered), then `snapshots.create`. The snapshot is listed on
 * the Snapshots page, where new sessions start from it.
 */
export function SnapshotPanel({
  sessionId,
  paused,
  support,
  onClose,
}: {
  sessionId: string;
  paused: boolean;
  support: SaveSupport | null;
  onClose: () => void;
}) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [name, setName] = useState(suggestedSnapshotName);
  const [saved, setSaved] = useState<Snapshot | null>(null);
  const [error, setError] = useState<HumanError | null>(null);
  const first = useRef<HTMLInputElement>(null);
  useEffect(() => first.current?.select(), []);
  const create = useMutation(
    trpc.snapshots.create.mutationOptions({
      onSuccess: (snapshot) => {
        setSaved(snapshot);
        void queryClient.invalidateQueries(trpc.snapshots.list.queryFilter());
      },
      onError: (e) => setError(humanError(e)),
    }),
  );
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    const typed = name.trim();
    const problem = snapshotNameProblem(typed);
    if (problem) {
      setError(pageProblem(problem));
      return;
    }
    setSaved(null);
    create.mutate({ sessionId, name: typed });
  };
  return (
    <section id="snapshot-panel" className="session-panel" aria-labelledby="snapshot-title">
      <form className="session-form" onSubmit={submit}>
        <h2 id="snapshot-title" className="panel-title">
          Snapshot
        </h2>
        <p className="muted small session-hint">
          A snapshot keeps this session as it is now: {kept(support)}. The session runs on
          {paused ? ' (taking a snapshot resumes it)' : ''}. Start new sessions from it on the Snapshots page;
          it counts against your snapshot quota until you delete it.
        </p>
        <label htmlFor="snapshot-name">Name</label>
        <input
          id="snapshot-name"
          ref={first}
          value={name}
          onChange={(e) => setName(e.target.value)}
          className="mono"
          spellCheck={false}
          autoComplete="off"
          maxLength={63}
        />
        {error && <ErrorNote error={error} />}
        <div className="session-form-actions">
          <button type="submit" className="primary" disabled={create.isPending}>
            {create.isPending ? 'Saving…' : 'Take snapshot'}
          </button>
          <button type="button" onClick={onClose}>
            Close
          </button>
        </div>
        {saved && (
          <p role="status" className="session-hint">
            Saved snapshot <strong className="mono">{saved.name}</strong> ({formatBytes(saved.bytes)},{' '}
            {saved.memory ? 'with memory' : 'files only'}). Start sessions from it on the{' '}
            <Link href="/snapshots">Snapshots</Link> page.
          </p>
        )}
      </form>
    </section>
  );
}

/** The session can no longer be used: destroyed (or being destroyed), or failed to start. */
export function isGone(state: string): boolean {
  return state === 'destroyed' || state === 'destroying' || state === 'failed';
}

/**
 * The page of a session that is not running and cannot be resumed by use: a stopped one offers Start (its
 * workspace is kept), a destroyed or failed one only the way back. Nothing here needs a running sandbox.
 */
export function SessionEnded({ sessionId, state }: { sessionId: string; state: string }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [error, setError] = useState<HumanError | null>(null);
  const start = useMutation(
    trpc.sessions.start.mutationOptions({
      onSuccess: (session) => queryClient.setQueryData(trpc.sessions.get.queryKey({ sessionId }), session),
      onError: (e) => setError(humanError(e)),
    }),
  );
  const gone = isGone(state);
  return (
    <section className="card session-ended" aria-labelledby="session-ended-title">
      <h1 id="session-ended-title">
        {state === 'stopped'
          ? 'This session is stopped'
          : state === 'failed'
            ? 'This session failed to start'
            : 'This session was destroyed'}
      </h1>
      <p>
        {state === 'stopped'
          ? 'Its workspace is kept; its programs are not running. Start it to use its files, the terminal and the preview again.'
          : state === 'failed'
            ? 'It never became usable. Destroy it from the dashboard and create another.'
            : 'Its sandbox and its files are gone for good. Create a new session from the dashboard.'}
      </p>
      {error && <ErrorNote error={error} />}
      <div className="session-ended-actions">
        {!gone && (
          <button
            type="button"
            className="primary"
            onClick={() => {
              setError(null);
              start.mutate({ sessionId });
            }}
            disabled={start.isPending}
          >
            {start.isPending ? 'Starting…' : 'Start'}
          </button>
        )}
        <Link href={`/s/${sessionId}/replay`}>Replay what happened</Link>
        <Link href="/">Back to the dashboard</Link>
      </div>
    </section>
  );
}
