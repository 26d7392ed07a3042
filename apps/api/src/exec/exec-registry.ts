import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
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

/**
 * A FIFO an async generator can wait on; ends on `end()` or when `signal` aborts. Unbounded itself: what goes
 * in is exec output, which the backend caps at the policy's `exec.maxOutputBytes`.
 */
export class Pipe<T> {
  readonly #items: T[] = [];
  #done = false;
  #error: unknown;
  #wake: (() => void) | undefined;

  /** Ended, and everything in it has been read. */
  get done(): boolean {
    return this.#done && this.#items.length === 0;
  }

  push(item: T): void {
    this.#items.push(item);
    this.#wake?.();
  }
  end(error?: unknown): void {
    this.#done = true;
    this.#error = error;
    this.#wake?.();
  }
  async *drain(signal: AbortSignal): AsyncGenerator<T> {
    const onAbort = () => this.#wake?.();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        const item = this.#items.shift();
        if (item !== undefined) {
          yield item;
          continue;
        }
        if (this.#done) {
          if (this.#error !== undefined) throw this.#error;
          return;
        }
        if (signal.aborted) return;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        this.#wake = undefined;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }
}

/** How long a started exec waits for its reader (exec.stream with its token) before it is cancelled. */
export const EXEC_ATTACH_MS = 30_000;

/** The reading side of a started exec: its stream token (hashed) and whether a reader holds it now. */
interface ExecStream {
  tokenHash: Buffer;
  /** A reader is attached (one at a time). */
  attached: boolean;
  /** Cancels the exec when no reader attaches in time (cleared while one is attached). */
  deadline: NodeJS.Timeout | undefined;
  /** Its output, read by one reader at a time. */
  output: Pipe<unknown>;
  /** Kills the process group. */
  cancel(): void;
}

interface ExecEntry {
  ownerId: string;
  sessionId: string;
  /** Present while stdin is open (`keepStdinOpen`). */
  stdin?: StdinQueue;
  /** Present for execs started by exec.start. */
  stream?: ExecStream;
}

const hashToken = (token: string): Buffer => createHash('sha256').update(token).digest();

/**
 * Running execs by id: the stdin of those that keep it open (exec.write, exec.closeStdin) and the stream tokens
 * of those started by exec.start. Only their owner can reach them; another user's exec id is NOT_FOUND.
 */
export class ExecRegistry {
  readonly #entries = new Map<string, ExecEntry>();
  readonly #attachMs: number;

  constructor(options: { attachMs?: number } = {}) {
    this.#attachMs = options.attachMs ?? EXEC_ATTACH_MS;
  }

  add(execId: string, entry: ExecEntry): void {
    this.#entries.set(execId, entry);
  }

  /**
   * Registers a started exec and returns the token that reads it: 256 random bits, bound to this exec and its
   * owner, usable until the exec ends; the exec is cancelled when nobody attaches within the attach window.
   */
  addStream(
    execId: string,
    entry: { ownerId: string; sessionId: string; stdin?: StdinQueue; output: Pipe<unknown>; cancel(): void },
  ): { token: string; attachBy: Date } {
    const token = randomBytes(32).toString('base64url');
    const { cancel, output, ...rest } = entry;
    const stream: ExecStream = {
      tokenHash: hashToken(token),
      attached: false,
      deadline: undefined,
      output,
      cancel,
    };
    this.#entries.set(execId, { ...rest, stream });
    this.#arm(execId, stream);
    return { token, attachBy: new Date(Date.now() + this.#attachMs) };
  }

  #arm(execId: string, stream: ExecStream): void {
    clearTimeout(stream.deadline);
    stream.deadline = setTimeout(() => {
      if (stream.attached) return;
      stream.cancel();
      this.delete(execId);
    }, this.#attachMs);
    stream.deadline.unref();
  }

  /**
   * Attaches the caller as the reader of a started exec: NOT_FOUND for an unknown exec, another user's, or a
   * wrong token (one answer, so ids cannot be probed); INVALID_STATE while another reader holds it.
   */
  attach(ownerId: string, execId: string, token: string): Pipe<unknown> {
    const entry = this.#entries.get(execId);
    const given = hashToken(token);
    if (!entry?.stream || entry.ownerId !== ownerId || !timingSafeEqual(entry.stream.tokenHash, given)) {
      throw new AppError('NOT_FOUND', `exec ${execId} is not running, or this is not its stream token`);
    }
    if (entry.stream.attached) {
      throw new AppError('INVALID_STATE', `exec ${execId} is already being read by another stream`);
    }
    entry.stream.attached = true;
    clearTimeout(entry.stream.deadline);
    return entry.stream.output;
  }

  /** The reader left before the end: the exec waits for another one within the attach window. */
  detach(execId: string): void {
    const stream = this.#entries.get(execId)?.stream;
    if (!stream) return;
    stream.attached = false;
    this.#arm(execId, stream);
  }

  /** Cancels a started exec now (exec.cancel). */
  cancel(ownerId: string, execId: string): void {
    const entry = this.get(ownerId, execId);
    entry.stream?.cancel();
  }

  delete(execId: string): void {
    const entry = this.#entries.get(execId);
    entry?.stdin?.close();
    clearTimeout(entry?.stream?.deadline);
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

  /** Execs registered now (running, or ended with output not yet read): a draining server waits for them. */
  get size(): number {
    return this.#entries.size;
  }

  /** The caller's exec's open stdin, or NOT_FOUND. */
  stdinOf(ownerId: string, execId: string): StdinQueue {
    const stdin = this.get(ownerId, execId).stdin;
    if (!stdin || stdin.closed) throw new AppError('NOT_FOUND', `exec ${execId} has no open stdin`);
    return stdin;
  }
}
