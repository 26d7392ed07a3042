'use client';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import Link from 'next/link';
import { useRouter } from 'next/navigation';
import { useEffect, useState } from 'react';
import { formatAge, formatBytes } from '../lib/file-types';
import { quotaLabel, type Snapshot } from '../lib/snapshots';
import { useTRPC } from '../lib/trpc';
import { ConfirmAction, ListBody, ListHead, useRowActions } from './list-parts';
import { ErrorBox } from './templates/template-parts';
import { TopBar } from './top-bar';

/**
 * Snapshots (issue 20): the caller's snapshots (name, the session taken, memory or files only, size, age), the
 * quota they use, New session (a session from one, then its IDE) and Delete (asks first). Snapshots are taken in
 * a session's header.
 */
export function SnapshotsPage() {
  const trpc = useTRPC();
  const router = useRouter();
  const queryClient = useQueryClient();
  const snapshots = useQuery(trpc.snapshots.list.queryOptions());
  const createSession = useMutation(trpc.sessions.create.mutationOptions());
  const remove = useMutation(trpc.snapshots.delete.mutationOptions());
  const { busy, error, act } = useRowActions();
  const [notice, setNotice] = useState<string | null>(null);
  const [, setTick] = useState(0);

  // Ages tick.
  useEffect(() => {
    const timer = setInterval(() => setTick((t) => t + 1), 10_000);
    return () => clearInterval(timer);
  }, []);

  const newSession = (s: Snapshot) => {
    setNotice(null);
    return act(`new:${s.id}`, async () => {
      const session = await createSession.mutateAsync({ fromSnapshot: s.id });
      await queryClient.invalidateQueries(trpc.sessions.list.queryFilter());
      router.push(`/s/${session.id}`);
    });
  };
  const destroy = (s: Snapshot) => {
    setNotice(null);
    return act(`delete:${s.id}`, async () => {
      await remove.mutateAsync({ snapshot: s.id });
      setNotice(`Deleted snapshot ${s.name}.`);
      await queryClient.invalidateQueries(trpc.snapshots.list.queryFilter());
    });
  };

  return (
    <div className="page">
      <TopBar />
      <main className="dashboard" aria-labelledby="snapshots-title">
        <section aria-labelledby="snapshots-title">
          <ListHead
            id="snapshots-title"
            title="Snapshots"
            onRefresh={() => void snapshots.refetch()}
            refreshLabel="Refresh snapshots"
          />
          <p className="muted small templates-intro">
            A snapshot keeps a session as it was when it was taken: its files and, where the server saves
            memory, its running programs. Start as many sessions from it as you like; each gets its own copy.
            Take one with Snapshot in a session&apos;s header. Snapshots are kept until you delete them and
            count against your quota.
          </p>
          {snapshots.data && (
            <p className="snapshot-quota small">
              <label htmlFor="snapshot-quota">
                Quota: {quotaLabel(snapshots.data.usedBytes, snapshots.data.maxBytes)}
              </label>{' '}
              {snapshots.data.maxBytes > 0 && (
                <meter
                  id="snapshot-quota"
                  min={0}
                  max={snapshots.data.maxBytes}
                  value={Math.min(snapshots.data.usedBytes, snapshots.data.maxBytes)}
                  high={snapshots.data.maxBytes * 0.9}
                />
              )}
            </p>
          )}
          {error && <ErrorBox error={error} />}
          {notice && (
            <p className="muted" role="status">
              {notice}
            </p>
          )}
          <ListBody
            query={snapshots}
            items={snapshots.data?.snapshots}
            loading="Loading snapshots…"
            empty={
              <>
                No snapshots yet. Take one with Snapshot in a session&apos;s header (open one from the{' '}
                <Link href="/">Sessions</Link> page), then start new sessions from it here.
              </>
            }
          >
            {(list) => (
              <table className="snapshots">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Taken of</th>
                    <th scope="col">Backend</th>
                    <th scope="col">Memory</th>
                    <th scope="col">Size</th>
                    <th scope="col">Taken</th>
                    <th scope="col">Actions</th>
                  </tr>
                </thead>
                <tbody>
                  {list.map((s) => (
                    <tr key={s.id}>
                      <td>
                        <span className="mono">{s.name}</span>
                        {s.name !== s.id && <div className="muted small mono">{s.id}</div>}
                      </td>
                      <td className="mono small">{s.sessionId}</td>
                      <td>{s.backend}</td>
                      <td
                        title={
                          s.memory
                            ? 'Memory and running programs were saved: sessions from it carry on where it was'
                            : 'Files only: programs start afresh in sessions from it'
                        }
                      >
                        {s.memory ? 'yes' : 'no (files only)'}
                      </td>
                      <td className="mono small">{formatBytes(s.bytes)}</td>
                      <td>
                        <time dateTime={s.createdAt} title={new Date(s.createdAt).toLocaleString()}>
                          {formatAge(s.createdAt)} ago
                        </time>
                      </td>
                      <td className="actions">
                        <button
                          type="button"
                          className="primary"
                          onClick={() => void newSession(s)}
                          disabled={busy !== null}
                          aria-label={`New session from snapshot ${s.name}`}
                          title="Create a session from this snapshot and open it"
                        >
                          {busy === `new:${s.id}` ? 'Creating session…' : 'New session'}
                        </button>
                        <ConfirmAction
                          label="Delete"
                          ariaLabel={`Delete snapshot ${s.name}`}
                          question={`Delete ${s.name}?`}
                          confirmLabel="Yes, delete"
                          runningLabel="Deleting…"
                          running={busy === `delete:${s.id}`}
                          disabled={busy !== null}
                          onConfirm={() => void destroy(s)}
                        />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </ListBody>
        </section>
      </main>
    </div>
  );
}
