import { randomBytes } from 'node:crypto';
import type { Principal } from '../auth/auth.ts';
import type { EventHistory } from './event-history.ts';

/**
 * Who caused an event: a signed-in user (login JWT), an API token of that user, an agent's API token, or the
 * session's sandbox itself (a program in it opened a connection; `userId` is the session's owner).
 */
export interface Actor {
  kind: 'user' | 'token' | 'agent' | 'sandbox';
  userId: string;
  tokenId?: string;
  name: string;
}

/** The actor of a principal. */
export function actorOf(principal: Principal): Actor {
  return principal.via === 'api-token'
    ? {
        kind: principal.agent ? 'agent' : 'token',
        userId: principal.userId,
        ...(principal.tokenId ? { tokenId: principal.tokenId } : {}),
        name: principal.username,
      }
    : { kind: 'user', userId: principal.userId, name: principal.username };
}

/** What happened in a session. `exec.output` data is UTF-8 text (lossy), at most 4 KiB per event. */
export type SessionEventBody =
  /**
   * A file changed: through the API (`write`, `mkdir`, `remove`, `rename`, with the actor), or by a process in
   * the sandbox (`changed`, actor null; `path: ''` means many changed at once: list the workspace again).
   */
  | {
      type: 'file.changed';
      op: 'write' | 'mkdir' | 'remove' | 'rename' | 'changed';
      path: string;
      to?: string;
    }
  | { type: 'exec.started'; execId: string; command: string[] }
  | { type: 'exec.output'; execId: string; stream: 'stdout' | 'stderr'; data: string; truncated: boolean }
  | {
      type: 'exec.exited';
      execId: string;
      exitCode: number | null;
      signal: string | null;
      timedOut: boolean;
      cancelled: boolean;
    }
  /** Why the session stopped on its own, or why the server marked it `failed` (e.g. a read-only workspace). */
  | { type: 'session.status'; state: string; reason?: string }
  | { type: 'control.taken' | 'control.released' }
  | { type: 'watcher.joined' | 'watcher.left'; watcherId: string; via: 'events' | 'terminal' }
  /**
   * A connection a program in the sandbox made through the egress proxy (actor: the sandbox), allowed or denied
   * with the reason; sent when it ends (allowed) or at once (denied). Bytes: `out` to the host, `in` back.
   */
  | {
      type: 'egress';
      via: 'connect' | 'http';
      host: string;
      port: number;
      allowed: boolean;
      reason: string | null;
      message: string | null;
      bytesOut: number;
      bytesIn: number;
      durationMs: number;
      /** Names (never values) of the secrets the connection's requests carried. */
      secrets: string[];
    }
  /** The session's network settings changed (`sessions.setNetwork`). */
  | { type: 'network.changed'; mode: string; allow: string[] }
  /** A fork of this session was made (`sessions.fork`); the fork's own stream starts with its status. */
  | { type: 'session.forked'; forkId: string };

/** One event of a session's stream; `id` is the cursor to resume after it. */
export type SessionEvent = SessionEventBody & {
  id: string;
  sessionId: string;
  at: string;
  actor: Actor | null;
};

/**
 * Sent instead of events a subscriber can no longer get (they left the ring buffer, or the cursor is from
 * another server instance): `missed` is how many were lost when known, else null.
 */
export interface GapEvent {
  type: 'gap';
  id: string;
  sessionId: string;
  at: string;
  actor: null;
  missed: number | null;
}

export type StreamedEvent = SessionEvent | GapEvent;

/** Options for {@link EventBus}. */
export interface EventBusOptions {
  /** Events kept per session for reconnecting subscribers; default 1000. */
  bufferSize?: number;
  /** Where events are kept beyond the ring (issue 22): it is handed each one as it is published. */
  history?: EventHistory;
  /** Others handed each event as it is published and told when a session is dropped (the recorder). */
  sinks?: readonly EventSink[];
}

/** What keeps a copy of a session's events (the store's history, the recording): handed each, never blocking. */
export interface EventSink {
  /** Takes one published event; must not throw or wait (it queues). */
  record(event: SessionEvent): void;
  /** The session was destroyed and its channel dropped. */
  forget(sessionId: string): unknown;
}

const MAX_OUTPUT_CHARS = 4096;

/** Someone watching a session now (an events subscription or a terminal). */
export interface Watcher {
  watcherId: string;
  via: 'events' | 'terminal';
  actor: Actor | null;
  since: string;
}

interface Channel {
  ring: (SessionEvent | undefined)[];
  watchers: Map<string, Watcher>;
  /** The sequence number the next event gets (first is 1). */
  next: number;
  waiters: Set<() => void>;
}

/**
 * An in-process event bus: per session a ring buffer of the last `bufferSize` events with monotonically
 * increasing cursors (`<epoch>-<seq>`, the epoch random per process so a cursor from before a restart is
 * recognised as a gap). Subscribers do not have queues of their own: each one reads the ring from its own
 * position, so a slow subscriber costs no memory; one that falls more than `bufferSize` events behind gets a
 * `gap` event and continues from the oldest event still held.
 */
export class EventBus {
  readonly epoch = randomBytes(4).toString('hex');
  readonly #size: number;
  readonly #channels = new Map<string, Channel>();
  /** The store's copy of the events (`events.history`); none in tests that need no store. */
  readonly history: EventHistory | undefined;
  readonly #sinks: readonly EventSink[];

  constructor(options: EventBusOptions = {}) {
    this.#size = options.bufferSize ?? 1000;
    this.history = options.history;
    this.#sinks = [...(options.history ? [options.history] : []), ...(options.sinks ?? [])];
  }

  #channel(sessionId: string): Channel {
    let c = this.#channels.get(sessionId);
    if (!c) {
      c = { ring: new Array(this.#size), watchers: new Map(), next: 1, waiters: new Set() };
      this.#channels.set(sessionId, c);
    }
    return c;
  }

  /** Appends an event to the session's stream and wakes its subscribers. */
  publish(sessionId: string, actor: Actor | null, body: SessionEventBody): SessionEvent | undefined {
    // A watcher leaving a dropped (destroyed) session must not bring its channel back.
    if (body.type === 'watcher.left' && !this.#channels.has(sessionId)) return undefined;
    const c = this.#channel(sessionId);
    const seq = c.next++;
    if (body.type === 'exec.output' && body.data.length > MAX_OUTPUT_CHARS) {
      body = { ...body, data: body.data.slice(0, MAX_OUTPUT_CHARS), truncated: true };
    }
    const event = {
      ...body,
      id: `${this.epoch}-${seq}`,
      sessionId,
      at: new Date().toISOString(),
      actor,
    } as SessionEvent;
    c.ring[seq % this.#size] = event;
    if (body.type === 'watcher.joined') {
      c.watchers.set(body.watcherId, { watcherId: body.watcherId, via: body.via, actor, since: event.at });
    } else if (body.type === 'watcher.left') {
      c.watchers.delete(body.watcherId);
    }
    for (const wake of c.waiters) wake();
    c.waiters.clear();
    for (const sink of this.#sinks) sink.record(event);
    return event;
  }

  /**
   * The cursor of the session's latest event (`<epoch>-0` before its first): subscribing after it yields what is
   * published from now on, with no gap.
   */
  head(sessionId: string): string {
    return `${this.epoch}-${(this.#channels.get(sessionId)?.next ?? 1) - 1}`;
  }

  /** Who is watching the session now. */
  watchers(sessionId: string): Watcher[] {
    return [...(this.#channels.get(sessionId)?.watchers.values() ?? [])];
  }

  /** Forgets a session's events (after it is destroyed), kept ones too; subscribers see no more events. */
  drop(sessionId: string): void {
    for (const sink of this.#sinks) void sink.forget(sessionId);
    const c = this.#channels.get(sessionId);
    if (!c) return;
    for (const wake of c.waiters) wake();
    this.#channels.delete(sessionId);
  }

  /** The sequence number a subscriber starting after `cursor` reads next, or null when it is not ours. */
  #startAfter(c: Channel, cursor: string | undefined): { seq: number; gap: boolean } {
    if (cursor === undefined) return { seq: c.next, gap: false };
    const m = /^([0-9a-f]+)-(\d{1,15})$/.exec(cursor);
    if (!m || m[1] !== this.epoch) return { seq: c.next, gap: true };
    const seq = Number(m[2]) + 1;
    if (seq > c.next) return { seq: c.next, gap: true };
    return { seq, gap: false };
  }

  /**
   * The session's events after `cursor` (or from now), until `signal` aborts. Missed events still in the ring
   * come first; what is no longer there becomes one `gap` event.
   */
  subscribe(
    sessionId: string,
    cursor: string | undefined,
    signal: AbortSignal,
  ): AsyncGenerator<StreamedEvent> {
    // The position is taken now, not when the generator first runs, so nothing published in between is lost.
    const c = this.#channel(sessionId);
    return this.#read(sessionId, c, this.#startAfter(c, cursor), signal);
  }

  async *#read(
    sessionId: string,
    c: Channel,
    start: { seq: number; gap: boolean },
    signal: AbortSignal,
  ): AsyncGenerator<StreamedEvent> {
    let { seq } = start;
    const gapEvent = (missed: number | null): GapEvent => ({
      type: 'gap',
      id: `${this.epoch}-${seq - 1}`,
      sessionId,
      at: new Date().toISOString(),
      actor: null,
      missed,
    });
    if (start.gap) yield gapEvent(null);
    while (!signal.aborted) {
      if (this.#channels.get(sessionId) !== c) return;
      const oldest = Math.max(1, c.next - this.#size);
      if (seq < oldest) {
        const missed = oldest - seq;
        seq = oldest;
        yield gapEvent(missed);
        continue;
      }
      if (seq < c.next) {
        const event = c.ring[seq % this.#size];
        seq += 1;
        if (event) yield event;
        continue;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          c.waiters.delete(done);
          signal.removeEventListener('abort', done);
          resolve();
        };
        c.waiters.add(done);
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }
}
