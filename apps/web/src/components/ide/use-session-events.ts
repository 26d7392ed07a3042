'use client';
import { useQueryClient } from '@tanstack/react-query';
import { useSubscription } from '@trpc/tanstack-react-query';
import { useCallback, useEffect, useRef, useState } from 'react';
import { errorMessage, useTRPC, useTRPCClient } from '../../lib/trpc';
import type { ConsoleLine } from './console-panel';
import { type EventLine, eventLines, type SessionEvent } from './events';

// Live events past these drop the oldest; pages loaded with "Load older" are on top of them (a person asked).
const MAX_EVENTS = 500;
const MAX_LINES = 2000;

/** What the page does with events beyond keeping them: files changed, events were missed. */
export interface SessionEventHandlers {
  /** `path` changed on disk ('' : many files inside the sandbox); `to` is a rename's new path. */
  onFileChanged(path: string, to: string | undefined): void;
  /** The stream lost events: whatever is shown may be stale. */
  onGap(): void;
}

/** The session's kept events older than those shown ("Load older"). */
export interface OlderEvents {
  /** More are kept than are shown. */
  available: boolean;
  loading: boolean;
  /** Why the last page (or the first history) could not be read, or null. */
  error: string | null;
  load(): void;
}

export interface SessionEvents {
  /** The latest events, oldest first (for the activity feed): history, then live. */
  events: SessionEvent[];
  /** Exec output and notable events as console lines. */
  lines: ConsoleLine[];
  clearLines(): void;
  /** The stream is down: why, and whether the link is retrying by itself. */
  live: { error: string; retrying: boolean } | null;
  /** Subscribes again after the stream stopped. */
  reconnect(): void;
  older: OlderEvents;
}

/**
 * The session's events: first the newest page of what the store kept (`events.history`: what an agent or another
 * tab did before this page opened, into the feed and the console), then live (`events.subscribe` over SSE from the
 * page's cursor, so nothing between the two is lost or shown twice; the link resumes from the last event id
 * after a drop). "Load older" pages further back. Watchers and control/status changes refetch their queries.
 */
export function useSessionEvents(sessionId: string, handlers: SessionEventHandlers): SessionEvents {
  const trpc = useTRPC();
  const client = useTRPCClient();
  const queryClient = useQueryClient();
  const [events, setEvents] = useState<SessionEvent[]>([]);
  const [lines, setLines] = useState<ConsoleLine[]>([]);
  // Where live events start: null until the history is read (or failed to be).
  const [start, setStart] = useState<{ cursor: string | undefined } | null>(null);
  const [olderAvailable, setOlderAvailable] = useState(false);
  const [olderLoading, setOlderLoading] = useState(false);
  const [olderError, setOlderError] = useState<string | null>(null);
  const nextBefore = useRef<string | null>(null);
  // Ids shown already: an event at the seam of history and live (or of two pages) is shown once.
  const seen = useRef(new Set<string>());
  // How many events and lines "Load older" added: live trimming keeps them.
  const extra = useRef({ events: 0, lines: 0 });
  const lineSeq = useRef(0);
  const handlersRef = useRef(handlers);
  handlersRef.current = handlers;

  const toLines = useCallback(
    (list: EventLine[]): ConsoleLine[] => list.map((l) => ({ id: `l${lineSeq.current++}`, ...l })),
    [],
  );

  // The newest kept page, once per session; then the subscription starts from its cursor.
  useEffect(() => {
    let cancelled = false;
    seen.current = new Set();
    extra.current = { events: 0, lines: 0 };
    nextBefore.current = null;
    setEvents([]);
    setLines([]);
    setStart(null);
    setOlderAvailable(false);
    setOlderError(null);
    client.events.history.query({ sessionId }).then(
      (page) => {
        if (cancelled) return;
        const kept = page.events as SessionEvent[];
        for (const e of kept) seen.current.add(e.id);
        setEvents(kept.slice(-MAX_EVENTS));
        setLines(toLines(kept.flatMap(eventLines)).slice(-MAX_LINES));
        nextBefore.current = page.nextBefore;
        setOlderAvailable(page.nextBefore !== null);
        setStart({ cursor: page.cursor ?? undefined });
      },
      (error: unknown) => {
        if (cancelled) return;
        // Live events still work without the history: say what is missing, and go on.
        setOlderError(`Earlier activity could not be read: ${errorMessage(error)}`);
        setStart({ cursor: undefined });
      },
    );
    return () => {
      cancelled = true;
    };
  }, [client, sessionId, toLines]);

  const loadOlder = useCallback(() => {
    const before = nextBefore.current;
    if (before === null || olderLoading) return;
    setOlderLoading(true);
    setOlderError(null);
    client.events.history
      .query({ sessionId, before })
      .then(
        (page) => {
          const fresh = (page.events as SessionEvent[]).filter((e) => !seen.current.has(e.id));
          for (const e of fresh) seen.current.add(e.id);
          const older = toLines(fresh.flatMap(eventLines));
          extra.current.events += fresh.length;
          extra.current.lines += older.length;
          setEvents((prev) => [...fresh, ...prev]);
          setLines((prev) => [...older, ...prev]);
          nextBefore.current = page.nextBefore;
          setOlderAvailable(page.nextBefore !== null);
        },
        (error: unknown) => setOlderError(`Older activity could not be read: ${errorMessage(error)}`),
      )
      .finally(() => setOlderLoading(false));
  }, [client, sessionId, olderLoading, toLines]);

  const onEvent = (event: SessionEvent) => {
    if (event.type !== 'gap') {
      if (seen.current.has(event.id)) return;
      // Repeats happen only at the seams (a page's end, a reconnect): a long-lived page need not remember all.
      if (seen.current.size > 20_000) seen.current.clear();
      seen.current.add(event.id);
    }
    setEvents((prev) => [...prev, event].slice(-(MAX_EVENTS + extra.current.events)));
    const added = toLines(eventLines(event));
    if (added.length > 0) setLines((prev) => [...prev, ...added].slice(-(MAX_LINES + extra.current.lines)));
    switch (event.type) {
      case 'file.changed':
        handlersRef.current.onFileChanged(event.path, event.to ?? undefined);
        break;
      case 'watcher.joined':
      case 'watcher.left':
        void queryClient.invalidateQueries(trpc.events.watchers.queryFilter({ sessionId }));
        break;
      case 'control.taken':
      case 'control.released':
      case 'session.status':
      case 'network.changed':
        // A pause or resume made anywhere (another tab, an agent, Studio pausing it while idle or resuming it on
        // use) moves the header's badge and the paused line; the network badge follows changes made anywhere.
        void queryClient.invalidateQueries(trpc.sessions.get.queryFilter({ sessionId }));
        break;
      case 'gap':
        handlersRef.current.onGap();
        break;
    }
  };

  const sub = useSubscription(
    trpc.events.subscribe.subscriptionOptions(
      start?.cursor === undefined ? { sessionId } : { sessionId, cursor: start.cursor },
      {
        enabled: start !== null,
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

  return {
    events,
    lines,
    clearLines: () => setLines([]),
    live,
    reconnect: sub.reset,
    older: { available: olderAvailable, loading: olderLoading, error: olderError, load: loadOlder },
  };
}
