/**
 * One stream's events, waiting for the stream to send them. Bounded by bytes: past `maxBytes` unsent, droppable
 * items (output) are dropped and counted instead of growing the server's memory for a client that reads slowly;
 * items pushed as not droppable (the end) are always kept.
 */
export class EventQueue<T> {
  readonly #items: { item: T; bytes: number }[] = [];
  #bytes = 0;
  #ended = false;
  #wake: (() => void) | undefined;
  readonly #maxBytes: number;
  /** Bytes dropped because the reader was too slow. */
  dropped = 0;
  /** Called once when the reader leaves (closes the queue). */
  onClose: (() => void) | undefined;
  #closed = false;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  push(item: T, bytes: number, droppable = true): void {
    if (this.#ended || this.#closed) return;
    if (droppable && this.#bytes + bytes > this.#maxBytes) {
      this.dropped += bytes;
      return;
    }
    this.#items.push({ item, bytes });
    this.#bytes += bytes;
    this.#wake?.();
  }

  /** No more items; the reader gets `end` once it has read those queued. */
  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  /** The next item; `idle` when none came within `idleMs`; `end` after the last one or when `signal` aborts. */
  async next(idleMs: number, signal: AbortSignal): Promise<{ item: T } | 'idle' | 'end'> {
    for (;;) {
      const first = this.#items.shift();
      if (first) {
        this.#bytes -= first.bytes;
        return { item: first.item };
      }
      if (this.#ended || this.#closed || signal.aborted) return 'end';
      const woke = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => done(false), idleMs);
        const onAbort = () => done(true);
        const done = (value: boolean) => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          this.#wake = undefined;
          resolve(value);
        };
        this.#wake = () => done(true);
        signal.addEventListener('abort', onAbort, { once: true });
      });
      if (!woke) return 'idle';
    }
  }

  /** The reader leaves: nothing more is queued. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#items.length = 0;
    this.#bytes = 0;
    this.#wake?.();
    this.onClose?.();
  }
}
