'use client';
import type { AppRouter } from '@studio/client';
import { useMutation, useQueries, useQuery, useQueryClient } from '@tanstack/react-query';
import type { inferRouterOutputs } from '@trpc/server';
import Link from 'next/link';
import { useEffect, useState } from 'react';
import { formatAge, formatBytes } from '../lib/file-types';
import {
  listBrief,
  NETWORK_MODE_LABELS,
  NETWORK_MODES,
  type NetworkMode,
  networkLabel,
  parseAllowList,
} from '../lib/network';
import { secretsLabel } from '../lib/secrets';
import { DEFAULT_TEMPLATE_NAME } from '../lib/templates';
import { errorMessage, useTRPC } from '../lib/trpc';
import { TopBar } from './top-bar';

type Outputs = inferRouterOutputs<AppRouter>;
type Session = Outputs['sessions']['list'][number];
type Stats = Outputs['sessions']['stats']['stats'];

/**
 * The sessions dashboard: list (paused ones with their state, forks with their parent), live resource use, create
 * (from a template, with network and secrets)/stop/start/resume/destroy.
 */
export function Dashboard() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [backend, setBackend] = useState('auto');
  const [template, setTemplate] = useState(DEFAULT_TEMPLATE_NAME);
  const [networkMode, setNetworkMode] = useState<NetworkMode>('none');
  const [allowText, setAllowText] = useState('');
  const [picked, setPicked] = useState<ReadonlySet<string>>(new Set());
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [confirming, setConfirming] = useState<string | null>(null);
  const [, setTick] = useState(0);

  // The list refreshes often while a session is being created, else every 15 s.
  const sessions = useQuery({
    ...trpc.sessions.list.queryOptions(),
    refetchInterval: (query) =>
      query.state.data?.some((s) => s.state === 'creating' || s.state === 'destroying') ? 2000 : 15_000,
  });
  const backends = useQuery(trpc.backends.list.queryOptions());
  const secrets = useQuery(trpc.secrets.list.queryOptions());
  const templates = useQuery(trpc.templates.list.queryOptions());
  // The default is offered first on its own; the API lists it too.
  const usable = (templates.data ?? []).filter((t) => t.usable && t.id !== DEFAULT_TEMPLATE_NAME);
  // A session's template by its image (sessions carry the image a template's build made).
  const templateOf = (image: string) => (templates.data ?? []).find((t) => t.image === image)?.name ?? null;
  const list = sessions.data ?? [];
  const running = list.filter((s) => s.state === 'running').map((s) => s.id);
  // Live resource use of each running session, every 5 s; a failed poll shows as still loading.
  const stats = useQueries({
    queries: running.map((sessionId) => ({
      ...trpc.sessions.stats.queryOptions({ sessionId }),
      refetchInterval: 5000,
      retry: false,
    })),
  });
  const statsOf = (id: string): Stats | null => stats[running.indexOf(id)]?.data?.stats ?? null;

  // Ages tick.
  useEffect(() => {
    const timer = setInterval(() => setTick((t) => t + 1), 10_000);
    return () => clearInterval(timer);
  }, []);

  const create = useMutation(trpc.sessions.create.mutationOptions());
  const stop = useMutation(trpc.sessions.stop.mutationOptions());
  const start = useMutation(trpc.sessions.start.mutationOptions());
  const resume = useMutation(trpc.sessions.resume.mutationOptions());
  const destroy = useMutation(trpc.sessions.destroy.mutationOptions());

  async function act(label: string, fn: () => Promise<unknown>) {
    setBusy(label);
    setError(null);
    try {
      await fn();
      await queryClient.invalidateQueries(trpc.sessions.list.queryFilter());
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(null);
    }
  }

  const allow = parseAllowList(allowText);
  // Only names still on the list (one deleted in another tab drops out of the pick).
  const given = (secrets.data ?? []).map((x) => x.name).filter((name) => picked.has(name));
  const togglePick = (name: string, on: boolean) =>
    setPicked((prev) => {
      const next = new Set(prev);
      if (on) next.add(name);
      else next.delete(name);
      return next;
    });
  const createSession = () =>
    act('create', () =>
      create.mutateAsync({
        backend: backend as 'auto' | 'docker' | 'gvisor',
        // A template deleted in another tab since falls back to the default rather than failing.
        template: usable.some((t) => t.id === template) ? template : DEFAULT_TEMPLATE_NAME,
        // Without a choice the API's default applies: no network.
        ...(networkMode !== 'none' || allow.length > 0 ? { network: { mode: networkMode, allow } } : {}),
        ...(given.length > 0 ? { secrets: given } : {}),
      }),
    );

  return (
    <div className="page">
      <TopBar />
      <main className="dashboard" aria-labelledby="sessions-title">
        <section className="card" aria-labelledby="create-title">
          <h2 id="create-title">New session</h2>
          <form
            className="create-form"
            onSubmit={(e) => {
              e.preventDefault();
              void createSession();
            }}
          >
            <label htmlFor="backend">Backend</label>
            <select id="backend" value={backend} onChange={(e) => setBackend(e.target.value)}>
              <option value="auto">auto (first available)</option>
              {(backends.data ?? []).map((b) => (
                <option key={b.name} value={b.name} disabled={!b.available}>
                  {b.name}
                  {b.available ? '' : ` (unavailable: ${b.reason ?? 'unknown'})`}
                </option>
              ))}
            </select>
            <label htmlFor="template">Template</label>
            <select
              id="template"
              value={template}
              onChange={(e) => setTemplate(e.target.value)}
              title="What the session starts with: the default image, or a template built on the Templates page"
            >
              <option value={DEFAULT_TEMPLATE_NAME}>default</option>
              {usable.map((t) => (
                <option key={t.id} value={t.id}>
                  {t.name}
                  {t.owner === 'shared' ? ' (shared)' : ''}
                </option>
              ))}
            </select>
            <label htmlFor="network-mode">Network</label>
            <select
              id="network-mode"
              value={networkMode}
              onChange={(e) => setNetworkMode(e.target.value as NetworkMode)}
            >
              {NETWORK_MODES.map((m) => (
                <option key={m} value={m}>
                  {NETWORK_MODE_LABELS[m]}
                </option>
              ))}
            </select>
            {networkMode === 'allowlist' && (
              <>
                <label htmlFor="network-allow">Allowed hosts</label>
                <input
                  id="network-allow"
                  className="allow-input"
                  value={allowText}
                  onChange={(e) => setAllowText(e.target.value)}
                  placeholder="registry.npmjs.org, *.pypi.org"
                  title="Hosts its programs may reach: example.com, *.example.com, host:port or an IP block such as 203.0.113.0/24 (ports 80 and 443 unless one is given)"
                  spellCheck={false}
                />
              </>
            )}
            <fieldset className="secret-picks">
              <legend>Secrets</legend>
              {(secrets.data ?? []).length === 0 ? (
                <span className="muted small">
                  none stored (<Link href="/secrets">add one</Link>)
                </span>
              ) : (
                (secrets.data ?? []).map((x) => (
                  <label
                    key={x.name}
                    className="secret-pick"
                    title={`Its placeholder in $${x.name}; the value goes only to ${listBrief(x.hosts, 8)}`}
                  >
                    <input
                      type="checkbox"
                      checked={picked.has(x.name)}
                      onChange={(e) => togglePick(x.name, e.target.checked)}
                    />
                    {x.name}
                  </label>
                ))
              )}
            </fieldset>
            <button type="submit" className="primary" disabled={busy !== null}>
              {busy === 'create' ? 'Creating…' : 'Create session'}
            </button>
          </form>
          {backends.error ? (
            <p className="error" role="alert">
              Could not list backends: {errorMessage(backends.error)}
            </p>
          ) : null}
          {templates.error ? (
            <p className="error" role="alert">
              Could not list templates: {errorMessage(templates.error)}
            </p>
          ) : null}
          {secrets.error ? (
            <p className="error" role="alert">
              Could not list your secrets: {errorMessage(secrets.error)}
            </p>
          ) : null}
        </section>

        {error && (
          <p className="error banner" role="alert">
            {error}
          </p>
        )}

        <section aria-labelledby="sessions-title">
          <div className="section-head">
            <h1 id="sessions-title">Your sessions</h1>
            <button type="button" onClick={() => void sessions.refetch()} aria-label="Refresh sessions">
              Refresh
            </button>
          </div>
          {sessions.isPending ? (
            <p className="muted" aria-live="polite">
              Loading sessions…
            </p>
          ) : sessions.error ? (
            <p className="error" role="alert">
              {errorMessage(sessions.error)}{' '}
              <button type="button" onClick={() => void sessions.refetch()}>
                Retry
              </button>
            </p>
          ) : list.length === 0 ? (
            <p className="empty">
              No sessions yet. Create one above: it starts a sandbox with its own workspace.
            </p>
          ) : (
            <table className="sessions">
              <thead>
                <tr>
                  <th scope="col">Session</th>
                  <th scope="col">Status</th>
                  <th scope="col">Backend</th>
                  <th scope="col">Template</th>
                  <th scope="col">Network</th>
                  <th scope="col">Age</th>
                  <th scope="col">CPU / memory / disk</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {list.map((s) => (
                  <SessionRow
                    key={s.id}
                    session={s}
                    template={templateOf(s.image)}
                    stats={statsOf(s.id)}
                    busy={busy}
                    confirming={confirming === s.id}
                    onStop={() => act(`stop:${s.id}`, () => stop.mutateAsync({ sessionId: s.id }))}
                    onStart={() => act(`start:${s.id}`, () => start.mutateAsync({ sessionId: s.id }))}
                    onResume={() => act(`resume:${s.id}`, () => resume.mutateAsync({ sessionId: s.id }))}
                    onAskDestroy={() => setConfirming(s.id)}
                    onCancelDestroy={() => setConfirming(null)}
                    onDestroy={() => {
                      setConfirming(null);
                      void act(`destroy:${s.id}`, () => destroy.mutateAsync({ sessionId: s.id }));
                    }}
                  />
                ))}
              </tbody>
            </table>
          )}
        </section>
      </main>
    </div>
  );
}

const prevCpu = new Map<string, { nanos: number; at: number }>();

function cpuPercent(id: string, stats: NonNullable<Stats>): string {
  const now = Date.now();
  const prev = prevCpu.get(id);
  prevCpu.set(id, { nanos: stats.cpuNanos, at: now });
  if (!prev || now - prev.at < 500) return '…';
  return `${(((stats.cpuNanos - prev.nanos) / 1e6 / (now - prev.at)) * 100).toFixed(1)}%`;
}

function SessionRow(props: {
  session: Session;
  /** The name of the template the session runs, when its image is one of the listed templates' builds. */
  template: string | null;
  stats: Stats | null;
  busy: string | null;
  confirming: boolean;
  onStop: () => void;
  onStart: () => void;
  onResume: () => void;
  onAskDestroy: () => void;
  onCancelDestroy: () => void;
  onDestroy: () => void;
}) {
  const { session: s, stats } = props;
  const [cpu, setCpu] = useState('…');
  useEffect(() => {
    if (stats) setCpu(cpuPercent(s.id, stats));
  }, [s.id, stats]);
  const busy = props.busy !== null;
  // A paused session opens like a running one: the IDE's first use resumes it.
  const open = s.state === 'running' || s.state === 'paused';
  return (
    <tr>
      <td>
        {open ? (
          <Link href={`/s/${s.id}`} className="session-link">
            {s.id}
          </Link>
        ) : (
          <span className="mono">{s.id}</span>
        )}
        {s.parentId && <div className="muted small">fork of {s.parentId}</div>}
        {s.control && <div className="muted small">control: {s.control.heldBy}</div>}
        {s.secrets.length > 0 && <div className="small secrets-badge">{secretsLabel(s.secrets)}</div>}
      </td>
      <td>
        <span className={`badge state-${s.state}`}>{s.state}</span>
        {s.state === 'paused' && (
          <div
            className="muted small"
            title="It holds no memory on the server; opening it or any action resumes it"
          >
            {s.pausedAt ? `for ${formatAge(s.pausedAt)}; ` : ''}resumes on use
          </div>
        )}
        {s.failureReason && <div className="error small">{s.failureReason}</div>}
      </td>
      <td>{s.backend}</td>
      <td className="mono" title={s.image}>
        {props.template ?? s.image}
      </td>
      <td
        className={`small network-${s.network.mode}`}
        title={s.network.mode === 'allowlist' ? listBrief(s.network.allow, 8) : undefined}
      >
        {networkLabel(s.network).replace(/^network: /, '')}
      </td>
      <td>{formatAge(s.createdAt)}</td>
      <td className="mono small">
        {s.state !== 'running'
          ? '—'
          : stats
            ? `${cpu} · ${formatBytes(stats.memoryBytes)} / ${formatBytes(stats.memoryLimitBytes)} · ${
                stats.diskUsedBytes === null ? '?' : formatBytes(stats.diskUsedBytes)
              }${stats.diskLimitBytes === null ? '' : ` / ${formatBytes(stats.diskLimitBytes)}`} · ${stats.pids} pids`
            : 'loading…'}
      </td>
      <td className="actions">
        {s.state === 'running' && (
          <>
            <Link href={`/s/${s.id}`} className="button primary" aria-label={`Open session ${s.id}`}>
              Open
            </Link>
            <button type="button" onClick={props.onStop} disabled={busy} aria-label={`Stop session ${s.id}`}>
              Stop
            </button>
          </>
        )}
        {s.state === 'paused' && (
          <>
            <Link href={`/s/${s.id}`} className="button" aria-label={`Open session ${s.id}`}>
              Open
            </Link>
            <button
              type="button"
              className="primary"
              onClick={props.onResume}
              disabled={busy}
              aria-label={`Resume session ${s.id}`}
            >
              Resume
            </button>
            <button type="button" onClick={props.onStop} disabled={busy} aria-label={`Stop session ${s.id}`}>
              Stop
            </button>
          </>
        )}
        {(s.state === 'stopped' || s.state === 'failed') && (
          <button type="button" onClick={props.onStart} disabled={busy} aria-label={`Start session ${s.id}`}>
            Start
          </button>
        )}
        {props.confirming ? (
          <span>
            <span className="small">Destroy for good?</span>{' '}
            <button type="button" className="danger" onClick={props.onDestroy} disabled={busy}>
              Yes, destroy
            </button>{' '}
            <button type="button" onClick={props.onCancelDestroy}>
              Cancel
            </button>
          </span>
        ) : (
          <button
            type="button"
            className="danger"
            onClick={props.onAskDestroy}
            disabled={busy}
            aria-label={`Destroy session ${s.id}`}
          >
            Destroy
          </button>
        )}
      </td>
    </tr>
  );
}
