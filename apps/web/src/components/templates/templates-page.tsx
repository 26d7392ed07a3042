'use client';
import { useQuery } from '@tanstack/react-query';
import Link from 'next/link';
import { useEffect, useState } from 'react';
import { formatAge, formatBytes } from '../../lib/file-types';
import { errorParts, useTRPC } from '../../lib/trpc';
import { TopBar } from '../top-bar';
import { TemplateDetail } from './template-detail';
import { TemplateForm } from './template-form';
import { ErrorBox, StateBadge } from './template-parts';

/**
 * Templates (issue 19): the ones you can use (yours and shared), a form that creates one (a recipe or a
 * Dockerfile), and the selected one's detail with its live build log, Rebuild, Delete and New session.
 */
export function TemplatesPage() {
  const trpc = useTRPC();
  // Refetched while a build runs, so badges of templates not open here move too.
  const templates = useQuery({
    ...trpc.templates.list.queryOptions(),
    refetchInterval: (query) => (query.state.data?.some((t) => t.state === 'building') ? 3000 : false),
  });
  const [selected, setSelected] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);
  const [, setTick] = useState(0);
  const list = templates.data ?? [];
  const own = list.filter((t) => t.owner === 'you');
  const current = list.find((t) => t.id === selected) ?? null;

  // Ages tick.
  useEffect(() => {
    const timer = setInterval(() => setTick((t) => t + 1), 10_000);
    return () => clearInterval(timer);
  }, []);

  return (
    <div className="page">
      <TopBar />
      <main className="dashboard" aria-labelledby="templates-title">
        <section aria-labelledby="templates-title">
          <div className="section-head">
            <h1 id="templates-title">Templates</h1>
            <span className="actions">
              <button type="button" onClick={() => void templates.refetch()} aria-label="Refresh templates">
                Refresh
              </button>
              <button
                type="button"
                className="primary"
                onClick={() => setCreating((c) => !c)}
                aria-expanded={creating}
                aria-controls="new-template"
              >
                New template
              </button>
            </span>
          </div>
          <p className="muted small templates-intro">
            A template is what a session starts with: Debian, npm and pip packages, files and build commands
            on top of the default image (or a Dockerfile), built once in an isolated sandbox. Sessions made
            from it start ready. Builds reach only the package sources the server allows.
          </p>
          {templates.isPending ? (
            <p className="muted" aria-live="polite">
              Loading templates…
            </p>
          ) : templates.error ? (
            <ErrorBox error={errorParts(templates.error)} />
          ) : (
            <>
              <table className="templates">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Owner</th>
                    <th scope="col">State</th>
                    <th scope="col">Size</th>
                    <th scope="col">Built</th>
                  </tr>
                </thead>
                <tbody>
                  {list.map((t) => (
                    <tr key={t.id} className={t.id === selected ? 'selected' : undefined}>
                      <td>
                        <button
                          type="button"
                          className="link-button mono"
                          onClick={() => {
                            setSelected(t.id);
                            setCreating(false);
                          }}
                          aria-label={`Show template ${t.name}`}
                        >
                          {t.name}
                        </button>
                        {t.description && <div className="muted small">{t.description}</div>}
                      </td>
                      <td>{t.owner === 'you' ? 'yours' : 'shared'}</td>
                      <td>
                        <StateBadge template={t} />
                      </td>
                      <td className="mono small">{t.sizeBytes === null ? '—' : formatBytes(t.sizeBytes)}</td>
                      <td>
                        {t.builtAt ? (
                          <time dateTime={t.builtAt} title={new Date(t.builtAt).toLocaleString()}>
                            {formatAge(t.builtAt)} ago
                          </time>
                        ) : (
                          '—'
                        )}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
              {own.length === 0 && (
                <p className="empty">
                  None of your own yet: sessions start from the default image. Press New template to make one.
                </p>
              )}
            </>
          )}
        </section>

        {notice && (
          <p className="muted" role="status">
            {notice}
          </p>
        )}

        {creating && (
          <section className="card" id="new-template" aria-labelledby="new-template-title">
            <h2 id="new-template-title">New template</h2>
            <TemplateForm
              templates={list}
              onCreated={(t) => {
                setCreating(false);
                setNotice(null);
                setSelected(t.id);
                void templates.refetch();
              }}
              onCancel={() => setCreating(false)}
            />
          </section>
        )}

        {current && !creating && (
          <TemplateDetail
            key={current.id}
            template={current}
            onDeleted={(name) => {
              setSelected(null);
              setNotice(`Deleted template ${name}.`);
              void templates.refetch();
            }}
          />
        )}
        {list.length > 0 && !current && !creating && (
          <p className="muted small">
            Pick a template above to see its build log, or create a session from one on the{' '}
            <Link href="/">Sessions</Link> page.
          </p>
        )}
      </main>
    </div>
  );
}
