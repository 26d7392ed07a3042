'use client';
import { type Actor, actorLabel, type SessionEvent } from './events';

function describe(e: SessionEvent): string | null {
  switch (e.type) {
    case 'file.changed':
      if (e.op === 'changed') return e.path === '' ? 'changed many files' : `changed ${e.path}`;
      return e.op === 'rename'
        ? `renamed ${e.path} → ${e.to ?? '?'}`
        : `${e.op === 'write' ? 'wrote' : e.op === 'mkdir' ? 'created folder' : 'removed'} ${e.path}`;
    case 'exec.started':
      return `ran ${e.command.join(' ')}`;
    case 'exec.exited':
      return `command finished (exit ${e.exitCode ?? e.signal ?? '?'}${e.timedOut ? ', timed out' : ''})`;
    case 'session.status':
      return `session is ${e.state}`;
    case 'control.taken':
      return 'took control';
    case 'control.released':
      return 'released control';
    case 'watcher.joined':
      return `started watching (${e.via})`;
    case 'watcher.left':
      return `stopped watching (${e.via})`;
    case 'gap':
      return `missed ${e.missed ?? 'some'} events`;
    default:
      return null;
  }
}

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
        items.map((e) => (
          <li key={e.id} className={`activity-item actor-${(e.actor as Actor | null)?.kind ?? 'system'}`}>
            <time dateTime={e.at} className="muted small">
              {new Date(e.at).toLocaleTimeString()}
            </time>{' '}
            <strong>{actorLabel(e.actor as Actor | null, me)}</strong> {describe(e)}
          </li>
        ))
      )}
    </ol>
  );
}
