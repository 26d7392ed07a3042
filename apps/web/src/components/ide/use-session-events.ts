'use client';
import { useQueryClient } from '@tanstack/react-query';
import { useSubscription } from '@trpc/tanstack-react-query';
import { useCallback, useRef, useState } from 'react';
import { errorMessage, useTRPC } from '../../lib/trpc';
import type { ConsoleLine } from './console-panel';
import { describeEgress, type SessionEvent } from './events';

const MAX_EVENTS = 500;
const MAX_LINES = 2000;

/** What the page does with events beyond keeping them: files changed, events were missed. */
export interface SessionEventHandlers {
  /** `path` changed on disk ('' : many files inside the sandbox); `to` is a rename's new path. */
  onFileChanged(path: string, to: string | undefined): void;
  /** The stream lost events: whatever is shown may be stale. */
  onGap(): void;
}

export interface SessionEvents {
  /** The latest events, oldest first (for the activity feed). */
  events: SessionEvent[];
  /** Exec output and notable events as console lines. */
  lines: ConsoleLine[];
  clearLines(): void;
  /** The stream is down: why, and whether the link is retrying by itself. */
  live: { error: string; retrying: boolean } | null;
  /** Subscribes again after the stream stopped. */
  reconnect(): void;
}

/**
 * The session's live events (`events.subscribe` over SSE through `subscriptionOptions`; the link resumes from
 * the last event id after a drop). Watchers and control/status changes refetch their queries.
 */
export function useSessionEvents(sessionId: string, handlers: SessionEventHandlers): SessionEvents {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [events, setEvents] = useState<SessionEvent[]>([]);
  const [lines, setLines] = useState<ConsoleLine[]>([]);
  const lineSeq = useRef(0);
  const handlersRef = useRef(handlers);
  handlersRef.current = handlers;

  const addLine = useCallback((kind: ConsoleLine['kind'], text: string) => {
    setLines((prev) => [...prev.slice(-(MAX_LINES - 1)), { id: `l${lineSeq.current++}`, kind, text }]);
  }, []);

  const onEvent = (event: SessionEvent) => {
    setEvents((prev) => [...prev.slice(-(MAX_EVENTS - 1)), event]);
    switch (event.type) {
      case 'file.changed':
        handlersRef.current.onFileChanged(event.path, event.to ?? undefined);
        break;
      case 'exec.started':
        addLine('info', `$ ${event.command.join(' ')}`);
        break;
      case 'exec.output':
        addLine(event.stream, event.data.replace(/\n$/, ''));
        break;
      case 'exec.exited':
        addLine(
          'info',
          `[exit ${event.exitCode ?? event.signal ?? '?'}${event.timedOut ? ', timed out' : ''}]`,
        );
        break;
      case 'watcher.joined':
      case 'watcher.left':
        void queryClient.invalidateQueries(trpc.events.watchers.queryFilter({ sessionId }));
        break;
      case 'control.taken':
      case 'control.released':
      case 'session.status':
        // A pause or resume made anywhere (another tab, an agent, Studio pausing it while idle or resuming it on
        // use) moves the header's badge and the paused line.
        void queryClient.invalidateQueries(trpc.sessions.get.queryFilter({ sessionId }));
        addLine(
          'info',
          `[${event.type}${event.type === 'session.status' ? `: ${event.state}${event.reason ? ` (${event.reason})` : ''}` : ''}]`,
        );
        break;
      case 'session.forked':
        addLine('info', `[session.forked: ${event.forkId}]`);
        break;
      case 'network.changed':
        // The header's network badge follows changes made anywhere (another tab, an agent, the API).
        void queryClient.invalidateQueries(trpc.sessions.get.queryFilter({ sessionId }));
        addLine('info', `[network.changed: ${event.mode}]`);
        break;
      case 'egress':
        // A refused connection is why a command run here fails: say so beside its output.
        if (!event.allowed) addLine('info', `[egress ${describeEgress(event)}]`);
        break;
      case 'gap':
        addLine('info', `[missed ${event.missed ?? 'some'} events]`);
        handlersRef.current.onGap();
        break;
    }
  };

  const sub = useSubscription(
    trpc.events.subscribe.subscriptionOptions(
      { sessionId },
      {
        // Each item is tracked (`{ id, data }`): the id is what the link resumes from.
        onData: (tracked) => onEvent(((tracked as { data?: SessionEvent }).data ?? tracked) as SessionEvent),
      },
    ),
  );

  const live =
    sub.status === 'error'
      ? { error: errorMessage(sub.error), retrying: false }
      : sub.status === 'connecting' && sub.error
        ? { error: errorMessage(sub.error), retrying: true }
        : null;

  return { events, lines, clearLines: () => setLines([]), live, reconnect: sub.reset };
}
