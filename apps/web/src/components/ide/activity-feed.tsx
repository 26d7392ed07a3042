'use client';
import { type Actor, describeEvent, eventActorLabel, type SessionEvent } from './events';

/** Who did what in this session, live. Everything is rendered as text. */
export function ActivityFeed({
  events,
  me,
}: {
  events: SessionEvent[];
  me: { id: string; username: string } | undefined;
}) {
  const items = events
    .filter((e) => e.type !== 'exec.output')
    .slice(-200)
    .reverse();
  return (
    <ol className="activity" aria-label="Activity feed">
      {items.length === 0 ? (
        <li className="empty">Nothing has happened yet.</li>
      ) : (
        items.map((e) => {
          const denied = e.type === 'egress' && !e.allowed;
          return (
            <li
              key={e.id}
              className={`activity-item actor-${(e.actor as Actor | null)?.kind ?? 'system'}${denied ? ' denied' : ''}`}
              // A refused connection's message says why in full and how to allow it.
              title={e.type === 'egress' ? (e.message ?? undefined) : undefined}
            >
              <time dateTime={e.at} className="muted small">
                {new Date(e.at).toLocaleTimeString()}
              </time>{' '}
              <strong>{eventActorLabel(e, me)}</strong> {describeEvent(e)}
            </li>
          );
        })
      )}
    </ol>
  );
}
