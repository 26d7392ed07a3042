'use client';
import '../../styles/history.css';
import { type Actor, describeEvent, eventActorLabel, type SessionEvent } from './events';
import type { OlderEvents } from './use-session-events';

/**
 * Who did what in this session, newest first: what the store kept from before the page opened, then live; "Load
 * older" pages further back. Everything is rendered as text.
 */
export function ActivityFeed({
  events,
  me,
  older,
}: {
  events: SessionEvent[];
  me: { id: string; username: string } | undefined;
  older?: OlderEvents;
}) {
  const items = events.filter((e) => e.type !== 'exec.output').reverse();
  return (
    <>
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
      {older?.error && (
        <p className="error small" role="alert">
          {older.error}
        </p>
      )}
      {older?.available && (
        <button
          type="button"
          className="activity-older"
          onClick={older.load}
          disabled={older.loading}
          title="Earlier events kept for this session, into the feed and the console"
        >
          {older.loading ? 'Loading older…' : 'Load older'}
        </button>
      )}
    </>
  );
}
