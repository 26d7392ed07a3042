import { AppError } from './errors.ts';

/** Seconds a client should wait before it retries a call refused while the server drains. */
export const DRAIN_RETRY_AFTER_SECONDS = 2;

/**
 * The API's shutdown state (issue 17, item 4). `start()` begins draining: new mutations and new subscriptions are
 * refused with a retryable UNAVAILABLE, idle streams (events) are told to go away at once so their clients
 * reconnect elsewhere, and running work (in-flight calls, exec streams, terminals) goes on. `end()` tells the
 * streams still open to go away too. The HTTP layer counts the rest (execs, terminals) itself.
 */
export class Drain {
  #draining = false;
  #inFlight = 0;
  readonly #idle = new AbortController();
  readonly #all = new AbortController();

  get draining(): boolean {
    return this.#draining;
  }

  /** Calls and work streams running now (idle streams are not counted: they end when draining starts). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Aborted when draining starts: streams that carry no work of their own (events) end then. */
  get idleStreams(): AbortSignal {
    return this.#idle.signal;
  }

  /** Aborted when the drain ends: every stream still open ends then. */
  get allStreams(): AbortSignal {
    return this.#all.signal;
  }

  start(): void {
    if (this.#draining) return;
    this.#draining = true;
    this.#idle.abort();
  }

  end(): void {
    this.start();
    this.#all.abort();
  }

  /** Counts one unit of running work until the returned function is called (once). */
  track(): () => void {
    this.#inFlight++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#inFlight--;
    };
  }
}

/** The refusal of new work while draining, and the going-away signal of a stream. */
export function goingAway(what: 'call' | 'stream'): AppError {
  return new AppError(
    'UNAVAILABLE',
    what === 'call'
      ? 'the server is shutting down and takes no new work; retry after Retry-After seconds (another instance, or this one restarted, will answer)'
      : 'the server is shutting down: reconnect in a moment (the stream resumes from the last event you received)',
    { retryAfterSeconds: DRAIN_RETRY_AFTER_SECONDS },
  );
}

/**
 * `source`, ended with {@link goingAway} when `signal` aborts. The inner iterator is returned without waiting: a
 * generator blocked on its next event only runs its `finally` when its own request signal aborts, which the
 * response ending does.
 */
export async function* untilGoingAway<T>(source: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  const iterator = source[Symbol.asyncIterator]();
  const gone = new Promise<'gone'>((resolve) => {
    if (signal.aborted) resolve('gone');
    else signal.addEventListener('abort', () => resolve('gone'), { once: true });
  });
  try {
    while (true) {
      const next = await Promise.race([iterator.next(), gone]);
      if (next === 'gone') throw goingAway('stream');
      if (next.done) return;
      yield next.value;
    }
  } finally {
    void iterator.return?.()?.catch(() => undefined);
  }
}
