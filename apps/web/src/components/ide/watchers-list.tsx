'use client';
import { useQuery } from '@tanstack/react-query';
import { useTRPC } from '../../lib/trpc';
import { type Actor, actorLabel } from './events';

/** Who is watching the session now (one chip per person and channel), live through watcher events. */
export function WatchersList({ sessionId }: { sessionId: string }) {
  const trpc = useTRPC();
  const me = useQuery(trpc.auth.me.queryOptions());
  const watchers = useQuery(trpc.events.watchers.queryOptions({ sessionId }));
  const unique = (watchers.data ?? []).filter(
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
    <span className="watchers" title="Watching now">
      <span className="muted small">Watching:</span>{' '}
      {unique.length === 0 ? (
        <span className="muted small">nobody</span>
      ) : (
        unique.map((w) => (
          <span key={w.watcherId} className={`chip actor-${w.actor?.kind ?? 'system'}`}>
            {actorLabel(w.actor as Actor | null, me.data)} ({w.via})
          </span>
        ))
      )}
    </span>
  );
}
