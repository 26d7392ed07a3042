/** The largest part of a build's log kept (its tail): what `templates.get` returns and the store keeps. */
export const BUILD_LOG_BYTES = 64 * 1024;

/** One item of a build's live log. */
export type BuildLogItem =
  | { type: 'log'; text: string }
  | { type: 'end'; state: 'ready' | 'failed'; failure: string | null };

/**
 * A running build's log: its tail kept for late readers, and each new chunk handed to the readers following it,
 * until the build ends. Bounded: a build that prints without end keeps only its last {@link BUILD_LOG_BYTES}.
 */
export class BuildLog {
  #text = '';
  #end: Extract<BuildLogItem, { type: 'end' }> | undefined;
  readonly #listeners = new Set<(item: BuildLogItem) => void>();

  append(text: string): void {
    if (this.#end || text === '') return;
    this.#text += text;
    if (this.#text.length > BUILD_LOG_BYTES * 2) this.#text = this.#text.slice(-BUILD_LOG_BYTES);
    for (const listener of this.#listeners) listener({ type: 'log', text });
  }

  /** The kept tail of the log. */
  text(): string {
    return this.#text.length > BUILD_LOG_BYTES ? this.#text.slice(-BUILD_LOG_BYTES) : this.#text;
  }

  end(state: 'ready' | 'failed', failure: string | null): void {
    if (this.#end) return;
    this.#end = { type: 'end', state, failure };
    for (const listener of this.#listeners) listener(this.#end);
    this.#listeners.clear();
  }

  /**
   * What was logged so far, then every new chunk, then the end; stops early when `signal` aborts. Chunks are
   * buffered for a slow reader (the tail bound applies to the kept text, the buffer is the reader's own).
   */
  async *follow(signal: AbortSignal): AsyncGenerator<BuildLogItem> {
    const queue: BuildLogItem[] = [];
    let wake: (() => void) | undefined;
    const push = (item: BuildLogItem) => {
      queue.push(item);
      wake?.();
    };
    const initial = this.text();
    if (initial !== '') queue.push({ type: 'log', text: initial });
    if (this.#end) queue.push(this.#end);
    else this.#listeners.add(push);
    const onAbort = () => wake?.();
    signal.addEventListener('abort', onAbort);
    try {
      while (!signal.aborted) {
        const item = queue.shift();
        if (item === undefined) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
          continue;
        }
        yield item;
        if (item.type === 'end') return;
      }
    } finally {
      this.#listeners.delete(push);
      signal.removeEventListener('abort', onAbort);
    }
  }
}
