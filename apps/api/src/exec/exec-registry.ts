import { AppError } from '../core/errors.ts';

/**
 * A process's stdin fed by `exec.write`: an async iterable of chunks. At most `maxPendingBytes` may wait
 * unread; a write beyond that is refused (INPUT_TOO_LARGE) instead of growing the server's memory.
 */
export class StdinQueue implements AsyncIterable<Uint8Array> {
  readonly #chunks: Uint8Array[] = [];
  #pending = 0;
  #closed = false;
  #wake: (() => void) | undefined;
  readonly #maxPendingBytes: number;

  constructor(maxPendingBytes: number) {
    this.#maxPendingBytes = maxPendingBytes;
  }

  get closed(): boolean {
    return this.#closed;
  }

  push(chunk: Uint8Array): void {
    if (this.#closed) throw new AppError('INVALID_STATE', 'stdin of this exec is closed');
    if (this.#pending + chunk.byteLength > this.#maxPendingBytes) {
      throw new AppError(
        'INPUT_TOO_LARGE',
        `more than ${this.#maxPendingBytes} bytes of stdin are waiting to be read; retry later`,
      );
    }
    this.#chunks.push(chunk);
    this.#pending += chunk.byteLength;
    this.#wake?.();
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      const chunk = this.#chunks.shift();
      if (chunk) {
        this.#pending -= chunk.byteLength;
        yield chunk;
        continue;
      }
      if (this.#closed) return;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = undefined;
    }
  }
}

interface ExecEntry {
  ownerId: string;
  sessionId: string;
  stdin: StdinQueue;
}

/** Streamed execs whose stdin is open, by exec id; only their owner can write to them. */
export class ExecRegistry {
  readonly #entries = new Map<string, ExecEntry>();

  add(execId: string, entry: ExecEntry): void {
    this.#entries.set(execId, entry);
  }

  delete(execId: string): void {
    this.#entries.get(execId)?.stdin.close();
    this.#entries.delete(execId);
  }

  /** The caller's exec, or NOT_FOUND (also for another user's exec id). */
  get(ownerId: string, execId: string): ExecEntry {
    const entry = this.#entries.get(execId);
    if (!entry || entry.ownerId !== ownerId) {
      throw new AppError('NOT_FOUND', `exec ${execId} is not running (or its stdin is not open)`);
    }
    return entry;
  }
}
