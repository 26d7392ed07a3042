'use client';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useRouter } from 'next/navigation';
import { useEffect, useRef, useState } from 'react';
import { formatBytes } from '../../lib/file-types';
import { DEFAULT_TEMPLATE_NAME, specSummary, type Template } from '../../lib/templates';
import { errorParts, useTRPC } from '../../lib/trpc';
import { AnsiText } from '../ide/ansi-text';
import { ErrorBox, type Failure, StateBadge } from './template-parts';
import { useBuildLog } from './use-build-log';

/**
 * One template: what it is made of, its build log live (chunks appended as the build prints them; the badge
 * moves when it ends), Rebuild, Delete (asks first) and New session (a session from it, then its IDE).
 */
export function TemplateDetail({
  template: t,
  onDeleted,
}: {
  template: Template;
  onDeleted: (name: string) => void;
}) {
  const trpc = useTRPC();
  const router = useRouter();
  const queryClient = useQueryClient();
  const log = useBuildLog(t.id);
  const build = useMutation(trpc.templates.build.mutationOptions());
  const remove = useMutation(trpc.templates.delete.mutationOptions());
  const createSession = useMutation(trpc.sessions.create.mutationOptions());
  const [confirming, setConfirming] = useState(false);
  const [error, setError] = useState<Failure | null>(null);
  const pane = useRef<HTMLPreElement>(null);
  const busy = build.isPending || remove.isPending || createSession.isPending;
  // The stream's end is news before the list is refetched.
  const state = log.end?.state ?? t.state;
  const failure = log.end ? log.end.failure : t.failure;
  const usable = t.usable || log.end?.state === 'ready';

  // Follow the log's end as it grows, as a terminal does.
  // biome-ignore lint/correctness/useExhaustiveDependencies: runs when the text changes
  useEffect(() => {
    const el = pane.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [log.text]);

  async function act(fn: () => Promise<unknown>) {
    setError(null);
    try {
      await fn();
    } catch (e) {
      setError(errorParts(e));
    }
  }

  const rebuild = () =>
    act(async () => {
      await build.mutateAsync({ template: t.id });
      await queryClient.invalidateQueries(trpc.templates.list.queryFilter());
      log.restart();
    });
  const destroy = () =>
    act(async () => {
      setConfirming(false);
      await remove.mutateAsync({ template: t.id });
      onDeleted(t.name);
    });
  const newSession = () =>
    act(async () => {
      const session = await createSession.mutateAsync({ template: t.id });
      await queryClient.invalidateQueries(trpc.sessions.list.queryFilter());
      router.push(`/s/${session.id}`);
    });

  const parts = specSummary(t.spec);
  return (
    <section className="card template-detail" aria-labelledby="template-detail-title">
      <div className="section-head">
        <h2 id="template-detail-title">
          <span className="mono">{t.name}</span> <StateBadge template={t} state={state} />
        </h2>
        <span className="actions">
          <button
            type="button"
            className="primary"
            onClick={() => void newSession()}
            disabled={busy || !usable}
            title={usable ? 'Create a session from this template and open it' : 'Not built yet'}
          >
            {createSession.isPending ? 'Creating session…' : 'New session'}
          </button>
          {t.owner === 'you' && (
            <>
              <button type="button" onClick={() => void rebuild()} disabled={busy || state === 'building'}>
                {build.isPending ? 'Starting…' : 'Rebuild'}
              </button>
              {confirming ? (
                <span>
                  <span className="small">Delete {t.name}?</span>{' '}
                  <button type="button" className="danger" onClick={() => void destroy()} disabled={busy}>
                    Yes, delete
                  </button>{' '}
                  <button type="button" onClick={() => setConfirming(false)}>
                    Cancel
                  </button>
                </span>
              ) : (
                <button
                  type="button"
                  className="danger"
                  onClick={() => setConfirming(true)}
                  disabled={busy}
                  aria-label={`Delete template ${t.name}`}
                >
                  Delete
                </button>
              )}
            </>
          )}
        </span>
      </div>
      {t.description && <p className="muted">{t.description}</p>}
      <p className="muted small">
        {t.owner === 'you' ? 'Yours' : 'Shared'}
        {t.image ? (
          <>
            {' · '}image <span className="mono">{t.image}</span>
          </>
        ) : null}
        {t.sizeBytes !== null ? ` · ${formatBytes(t.sizeBytes)}` : ''}
        {t.builtAt ? ` · built ${new Date(t.builtAt).toLocaleString()}` : ''}
      </p>
      {state === 'failed' && failure && (
        <p className="error" role="alert">
          The build failed: {failure}
        </p>
      )}
      {error && <ErrorBox error={error} />}
      {parts.length > 0 && (
        <dl className="template-spec">
          {parts.map((p) => (
            <div key={p.label}>
              <dt>{p.label}</dt>
              <dd className="mono small">
                {p.lines.map((line, i) => (
                  // biome-ignore lint/suspicious/noArrayIndexKey: lines of a fixed spec
                  <div key={i}>{line}</div>
                ))}
              </dd>
            </div>
          ))}
        </dl>
      )}
      <h3 className="panel-title" id="build-log-title">
        Build log{state === 'building' ? ' (live)' : ''}
      </h3>
      {log.error && <ErrorBox error={log.error} />}
      {t.id === DEFAULT_TEMPLATE_NAME && (
        <p className="muted small">
          The server&apos;s own image, built by its operator (infra/image/build.sh), so it has no build log
          here. Start your templates from it: it is every recipe&apos;s default base.
        </p>
      )}
      <pre ref={pane} className="build-log" role="log" aria-labelledby="build-log-title">
        {log.text === '' ? (
          state === 'building' ? (
            'Waiting for output…'
          ) : (
            'No log.'
          )
        ) : (
          // Builds print colours (apt, npm): shown as the console shows them, as text.
          <AnsiText text={log.text} />
        )}
      </pre>
    </section>
  );
}
