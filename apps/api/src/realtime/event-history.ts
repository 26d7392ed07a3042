import type { NewSessionEvent, SessionEventRecord, Store } from '@studio/db';
import type { Logger } from '../core/logger.ts';
import type { Actor, EventSink, SessionEvent, SessionEventBody } from './event-bus.ts';

/** Options for {@link EventHistory}. */
export interface EventHistoryOptions {
  store: Store;
  logger: Logger;
  /** Events kept per session (the newest); default 2000. */
  keep?: number;
  /** A write starts this long after the first event waiting for it (default 200 ms)… */
  flushMs?: number;
  /** …or as soon as this many wait (default 100). */
  batchSize?: number;
  /**
   * Events held while the store is slow or down (default 10 000): past it the oldest waiting ones are dropped, so a
   * store outage costs history, never the API's memory.
   */
  maxQueued?: number;
  /** How often the events of destroyed sessions are swept (default 10 min; 0: never, the first at start too). */
  sweepMs?: number;
}

/** A page of a session's stored events ({@link EventHistory.page}). */
export interface HistoryPage {
  /** Oldest first. Each event's `id` is its event-bus cursor, as on `events.subscribe`. */
  events: SessionEvent[];
  /** The `before` of the next older page; null when this one reaches the oldest kept. */
  nextBefore: string | null;
  /**
   * On the newest page (no `before`): the cursor to subscribe after, so that live events continue exactly where
   * the page ends (no loss, no repeat); null on older pages.
   */
  cursor: string | null;
}

/**
 * Who is watching is presence, not history: every page load adds two of them, and a session someone reopens often
 * would otherwise keep mostly its own viewers. `events.watchers` says who is there now.
 */
const NOT_KEPT: ReadonlySet<SessionEvent['type']> = new Set(['watcher.joined', 'watcher.left']);

const LOG_EVERY_MS = 60_000;

/**
 * Keeps sessions' events in the store (issue 22) so that opening a session shows what was done before. The event
 * bus hands every event to {@link record}, which only queues it: writes happen in batches (every `flushMs`, or
 * `batchSize` events), one at a time, off the publisher's path. A failed write is logged (at most once a minute,
 * with how many events were lost) and never reaches the publisher; live events do not depend on the store.
 */
export class EventHistory implements EventSink {
  readonly #o: Required<Omit<EventHistoryOptions, 'store' | 'logger'>> & EventHistoryOptions;
  #queue: SessionEvent[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #writing: Promise<void> = Promise.resolve();
  /** A write is scheduled and has not yet taken from the queue: it will take what arrives meanwhile too. */
  #scheduled = false;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  #lost = 0;
  #loggedAt = 0;

  constructor(options: EventHistoryOptions) {
    this.#o = {
      keep: 2000,
      flushMs: 200,
      batchSize: 100,
      maxQueued: 10_000,
      sweepMs: 10 * 60_000,
      ...options,
    };
    if (this.#o.sweepMs > 0) {
      void this.sweep();
      this.#sweeper = setInterval(() => void this.sweep(), this.#o.sweepMs);
      this.#sweeper.unref?.();
    }
  }

  /** Queues an event for the store (synchronous and cheap: the bus calls it from `publish`). */
  record(event: SessionEvent): void {
    if (this.#closed || NOT_KEPT.has(event.type)) return;
    this.#queue.push(event);
    const over = this.#queue.length - this.#o.maxQueued;
    if (over > 0) {
      this.#queue.splice(0, over);
      this.#lose(over, undefined);
    }
    if (this.#queue.length >= this.#o.batchSize) void this.flush();
    else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => void this.flush(), this.#o.flushMs);
      this.#timer.unref?.();
    }
  }

  /** Writes everything queued so far; resolves when it is stored (or its failure logged). Never rejects. */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!this.#scheduled) {
      this.#scheduled = true;
      this.#writing = this.#writing.then(() => {
        this.#scheduled = false;
        return this.#write();
      });
    }
    return this.#writing;
  }

  async #write(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, 500);
      try {
        await this.#o.store.appendSessionEvents(batch.map(toRow), this.#o.keep);
      } catch (error) {
        this.#lose(batch.length, error);
        return;
      }
    }
  }

  #lose(count: number, error: unknown): void {
    this.#lost += count;
    const now = Date.now();
    if (now - this.#loggedAt < LOG_EVERY_MS) return;
    this.#loggedAt = now;
    this.#o.logger.warn('session events not kept in the store (history will miss them)', {
      lost: this.#lost,
      ...(error === undefined ? { reason: 'the store is slower than events arrive' } : { error }),
    });
    this.#lost = 0;
  }

  /**
   * A page of `ownerId`'s session's kept events: the newest `limit`, or the `limit` before `before` (a page's
   * `nextBefore`). The newest page first writes what is queued, so it holds everything published until now;
   * `head` is the bus's cursor taken before that (see {@link HistoryPage.cursor}).
   */
  async page(
    ownerId: string,
    sessionId: string,
    options: { before?: string | undefined; limit: number; head?: string },
  ): Promise<HistoryPage> {
    const newest = options.before === undefined;
    if (newest) await this.flush();
    const rows = await this.#o.store.listSessionEvents(ownerId, sessionId, {
      before: options.before,
      limit: options.limit + 1,
    });
    const more = rows.length > options.limit;
    const page = rows.slice(0, options.limit).reverse();
    const events = page.map(toEvent);
    return {
      events,
      nextBefore: more ? (page[0]?.id ?? null) : null,
      cursor: newest ? resumeCursor(events.at(-1)?.id, options.head) : null,
    };
  }

  /** Forgets a destroyed session's events: those still queued and those stored. */
  async forget(sessionId: string): Promise<void> {
    this.#queue = this.#queue.filter((e) => e.sessionId !== sessionId);
    // After a write in flight, which may hold some of them.
    await this.#writing;
    try {
      await this.#o.store.deleteSessionEvents(sessionId);
    } catch (error) {
      this.#o.logger.warn('could not forget a destroyed session’s events (the next sweep will)', {
        sessionId,
        error,
      });
    }
  }

  /** Forgets the events of every destroyed session, however it was destroyed (a sweep, a crash before forget). */
  async sweep(): Promise<void> {
    try {
      await this.#o.store.deleteEndedSessionEvents();
    } catch (error) {
      this.#o.logger.warn('could not sweep destroyed sessions’ events', { error });
    }
  }

  /** Writes what is queued and takes no more. */
  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    await this.flush();
    this.#closed = true;
  }
}

/**
 * The cursor live events continue from after the newest page: its newest event when that is the bus's latest
 * (same process, not older than `head`), else `head` (the bus restarted since, or the latest events were presence,
 * which is not kept). Without a head, the newest event's (a subscribe from another process's cursor gets a gap).
 */
export function resumeCursor(newest: string | undefined, head: string | undefined): string | null {
  if (head === undefined) return newest ?? null;
  if (newest === undefined) return head;
  const [newestEpoch, newestSeq] = newest.split('-');
  const [headEpoch, headSeq] = head.split('-');
  return newestEpoch === headEpoch && Number(newestSeq) >= Number(headSeq) ? newest : head;
}

function toRow(event: SessionEvent): NewSessionEvent {
  const { id, sessionId, at, actor, ...body } = event;
  return {
    sessionId,
    cursor: id,
    at: new Date(at),
    actor: actor as unknown as Record<string, unknown> | null,
    body: body as Record<string, unknown>,
  };
}

function toEvent(row: SessionEventRecord): SessionEvent {
  return {
    ...(row.body as unknown as SessionEventBody),
    id: row.cursor,
    sessionId: row.sessionId,
    at: row.at.toISOString(),
    actor: row.actor as unknown as Actor | null,
  } as SessionEvent;
}
