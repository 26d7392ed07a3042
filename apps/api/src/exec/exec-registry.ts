import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { AppError } from '../core/errors.ts';
import { newTaggedId, nodeTag } from '../core/ids.ts';

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

/** One event of an {@link ExecLog} with its sequence number (the first event is 1). */
export interface LoggedEvent<T> {
  seq: number;
  item: T;
}

/**
 * A started exec's events, kept for its readers so that a reader that reconnects resumes after the last event it
 * saw (exactly once: nothing lost, nothing twice). Bounded by bytes: past `maxBytes` the oldest events are
 * forgotten (never the newest one), and a reader that asks to resume before what is still held is refused with
 * RESUME_EXPIRED instead of silently skipping what it missed.
 */
export class ExecLog<T> {
  readonly #events: { seq: number; item: T; bytes: number }[] = [];
  #head = 0;
  #next = 1;
  #bytes = 0;
  #done = false;
  #error: unknown;
  readonly #waiters = new Set<() => void>();
  readonly #maxBytes: number;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** Ended (an exit, a failure or a cancel), whatever readers have read. */
  get ended(): boolean {
    return this.#done;
  }
  /** The sequence number of the newest event (0 before the first). */
  get last(): number {
    return this.#next - 1;
  }
  /** The sequence number of the oldest event still held (`last + 1` when none is). */
  get first(): number {
    return this.#events[this.#head]?.seq ?? this.#next;
  }
  /** Bytes held now (an approximation of the memory the events use). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Appends an event of about `bytes` bytes. */
  push(item: T, bytes: number): void {
    if (this.#done) return;
    this.#events.push({ seq: this.#next++, item, bytes });
    this.#bytes += bytes;
    while (this.#bytes > this.#maxBytes && this.#events.length - this.#head > 1) {
      const old = this.#events[this.#head++];
      if (old) this.#bytes -= old.bytes;
    }
    // Compact now and then, so forgotten events do not keep the array long.
    if (this.#head > 1024 && this.#head * 2 > this.#events.length) {
      this.#events.splice(0, this.#head);
      this.#head = 0;
    }
    this.#wake();
  }

  /** No more events; a reader that has read them all then ends (throwing `error` when given). */
  end(error?: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = error;
    this.#wake();
  }

  #wake(): void {
    for (const wake of this.#waiters) wake();
    this.#waiters.clear();
  }

  /**
   * Throws when a reader cannot resume after event `after` (0: from the first event): RESUME_EXPIRED when events
   * it has not seen were already forgotten, INPUT_INVALID when `after` is past the newest event.
   */
  check(after: number): void {
    if (after > this.last) {
      throw new AppError(
        'INPUT_INVALID',
        `lastEventId ${after} is past this exec's newest event (${this.last}): it is not an id of this exec`,
      );
    }
    if (after + 1 < this.first) {
      throw new AppError(
        'RESUME_EXPIRED',
        `events ${after + 1}..${this.first - 1} of this exec left its replay buffer (${this.#maxBytes} bytes); ` +
          'its output from there on is lost to this reader: start the command again if you need it',
      );
    }
  }

  /**
   * The events after `after` (0: from the first), then the end; returns early when `signal` aborts. Throws like
   * {@link check}, also later if this reader falls so far behind that its next event is forgotten.
   */
  async *read(after: number, signal: AbortSignal): AsyncGenerator<LoggedEvent<T>> {
    this.check(after);
    let seq = after + 1;
    const onAbort = () => this.#wake();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        if (signal.aborted) return;
        if (seq < this.#next) {
          this.check(seq - 1);
          const event = this.#events[this.#head + (seq - this.first)];
          if (!event) throw new AppError('INTERNAL', `exec event ${seq} is missing from its log`);
          seq++;
          yield { seq: event.seq, item: event.item };
          continue;
        }
        if (this.#done) {
          if (this.#error !== undefined) throw this.#error;
          return;
        }
        await new Promise<void>((resolve) => this.#waiters.add(resolve));
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }
}

/** How long a started exec waits for its reader (exec.stream with its token) before it is cancelled. */
export const EXEC_ATTACH_MS = 30_000;

/** How long a streamed exec's events stay readable after it ended, so a reader reconnecting then still gets `exit`. */
export const EXEC_LINGER_MS = 30_000;

/** Event bytes that ended execs may hold in all while they linger; past it the oldest ended ones go early. */
export const EXEC_LINGER_MAX_BYTES = 64 * 1024 * 1024;

/** The reading side of a started exec: its stream token (hashed), its event log and its current reader. */
interface ExecStream {
  tokenHash: Buffer;
  /** The reader now (one at a time; a new one takes over from it), or undefined. */
  reader: AbortController | undefined;
  /** Cancels the exec when no reader attaches in time (cleared while one is attached or once it ended). */
  deadline: NodeJS.Timeout | undefined;
  /** Forgets the exec once it has ended and lingered. */
  linger: NodeJS.Timeout | undefined;
  log: ExecLog<unknown>;
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

/** A reader's hold on a started exec, from {@link ExecRegistry.attach}. */
export interface ExecLease {
  log: ExecLog<unknown>;
  /** Aborts when another reader takes over (its reason an INVALID_STATE AppError). */
  signal: AbortSignal;
  /** The reader left: while the exec runs it waits for another one within the attach window. */
  release(): void;
}

const hashToken = (token: string): Buffer => createHash('sha256').update(token).digest();

/**
 * Running execs by id: the stdin of those that keep it open (exec.write, exec.closeStdin) and the stream tokens
 * and event logs of those started by exec.start. Only their owner can reach them; another user's exec id is
 * NOT_FOUND.
 */
export class ExecRegistry {
  readonly #entries = new Map<string, ExecEntry>();
  readonly #attachMs: number;
  readonly #lingerMs: number;
  readonly #lingerMaxBytes: number;
  /** Ended execs still readable, oldest first. */
  readonly #lingering = new Set<string>();

  readonly #tag: Buffer | null;

  constructor(
    options: {
      attachMs?: number;
      lingerMs?: number;
      lingerMaxBytes?: number;
      /** A node service's id (issue 23): its exec ids carry it, so API replicas route exec calls to it. */
      nodeId?: string | null;
    } = {},
  ) {
    this.#tag = options.nodeId ? nodeTag(options.nodeId) : null;
    this.#attachMs = options.attachMs ?? EXEC_ATTACH_MS;
    this.#lingerMs = options.lingerMs ?? EXEC_LINGER_MS;
    this.#lingerMaxBytes = options.lingerMaxBytes ?? EXEC_LINGER_MAX_BYTES;
  }

  /** A new exec id (tagged with this node's id in a cluster). */
  newId(): string {
    return newTaggedId('exe_', this.#tag);
  }

  add(execId: string, entry: ExecEntry): void {
    this.#entries.set(execId, entry);
  }

  /**
   * Registers a started exec and returns the token that reads it: 256 random bits, bound to this exec and its
   * owner, usable until the exec ends and lingers; the exec is cancelled when nobody attaches within the attach
   * window.
   */
  addStream(
    execId: string,
    entry: { ownerId: string; sessionId: string; stdin?: StdinQueue; log: ExecLog<unknown>; cancel(): void },
  ): { token: string; attachBy: Date } {
    const token = randomBytes(32).toString('base64url');
    const { cancel, log, ...rest } = entry;
    const stream: ExecStream = {
      tokenHash: hashToken(token),
      reader: undefined,
      deadline: undefined,
      linger: undefined,
      log,
      cancel,
    };
    this.#entries.set(execId, { ...rest, stream });
    this.#arm(execId, stream);
    return { token, attachBy: new Date(Date.now() + this.#attachMs) };
  }

  #arm(execId: string, stream: ExecStream): void {
    clearTimeout(stream.deadline);
    if (stream.log.ended) return;
    stream.deadline = setTimeout(() => {
      if (stream.reader || stream.log.ended) return;
      stream.cancel();
      this.delete(execId);
    }, this.#attachMs);
    stream.deadline.unref();
  }

  /**
   * Attaches the caller as the reader of a started exec: NOT_FOUND for an unknown exec, another user's, or a
   * wrong token (one answer, so ids cannot be probed). A reader already attached is taken over (its signal
   * aborts): the token is the capability, and the usual second reader is the same client reconnecting before
   * the server noticed its old connection drop. `after` is the event it resumes after (0: from the first); one
   * it cannot resume after is refused (see {@link ExecLog.check}) before anyone is taken over.
   */
  attach(ownerId: string, execId: string, token: string, after = 0): ExecLease {
    const entry = this.#entries.get(execId);
    const given = hashToken(token);
    if (!entry?.stream || entry.ownerId !== ownerId || !timingSafeEqual(entry.stream.tokenHash, given)) {
      throw new AppError('NOT_FOUND', `exec ${execId} is not running, or this is not its stream token`);
    }
    const stream = entry.stream;
    stream.log.check(after);
    stream.reader?.abort(
      new AppError('INVALID_STATE', `exec ${execId} is now read by another stream with its token`),
    );
    const reader = new AbortController();
    stream.reader = reader;
    clearTimeout(stream.deadline);
    return {
      log: stream.log,
      signal: reader.signal,
      release: () => {
        if (stream.reader !== reader) return;
        stream.reader = undefined;
        if (this.#entries.get(execId)?.stream === stream) this.#arm(execId, stream);
      },
    };
  }

  /**
   * The exec ended: its events stay readable for the linger window, then it is forgotten. Ended execs together
   * hold at most `lingerMaxBytes` of events: past it the oldest ones are forgotten early (a reconnect to one of
   * them is NOT_FOUND), so many big outputs ending at once cannot pile up in memory.
   */
  finished(execId: string): void {
    const stream = this.#entries.get(execId)?.stream;
    if (!stream) return;
    clearTimeout(stream.deadline);
    clearTimeout(stream.linger);
    stream.linger = setTimeout(() => {
      if (this.#entries.get(execId)?.stream === stream) this.delete(execId);
    }, this.#lingerMs);
    stream.linger.unref();
    this.#lingering.add(execId);
    let bytes = 0;
    for (const id of this.#lingering) bytes += this.#entries.get(id)?.stream?.log.bytes ?? 0;
    for (const id of this.#lingering) {
      if (bytes <= this.#lingerMaxBytes || id === execId) break;
      bytes -= this.#entries.get(id)?.stream?.log.bytes ?? 0;
      this.delete(id);
    }
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
    clearTimeout(entry?.stream?.linger);
    this.#entries.delete(execId);
    this.#lingering.delete(execId);
  }

  /** How many execs are held, and the bytes their event logs hold (for tests and metrics). */
  stats(): { execs: number; logBytes: number } {
    let logBytes = 0;
    for (const e of this.#entries.values()) logBytes += e.stream?.log.bytes ?? 0;
    return { execs: this.#entries.size, logBytes };
  }

  /** The caller's exec, or NOT_FOUND (also for another user's exec id). */
  get(ownerId: string, execId: string): ExecEntry {
    const entry = this.#entries.get(execId);
    if (!entry || entry.ownerId !== ownerId) {
      throw new AppError('NOT_FOUND', `exec ${execId} is not running (or its stdin is not open)`);
    }
    return entry;
  }

  /** Execs not ended yet (an ended one lingering for a late reader is not counted): a draining server waits for them. */
  get running(): number {
    let n = 0;
    for (const e of this.#entries.values()) if (!e.stream?.log.ended) n++;
    return n;
  }

  /** The caller's exec's open stdin, or NOT_FOUND. */
  stdinOf(ownerId: string, execId: string): StdinQueue {
    const stdin = this.get(ownerId, execId).stdin;
    if (!stdin || stdin.closed) throw new AppError('NOT_FOUND', `exec ${execId} has no open stdin`);
    return stdin;
  }
}
