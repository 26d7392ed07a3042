import { createHash } from 'node:crypto';
import { AppError } from '../core/errors.ts';

/** How long a call's result is kept for a retry with the same idempotency key. */
export const IDEMPOTENCY_WINDOW_MS = 10 * 60_000;

/** Options for {@link IdempotencyCache}. */
export interface IdempotencyCacheOptions {
  /** Default {@link IDEMPOTENCY_WINDOW_MS}. */
  windowMs?: number;
  /** Keys kept per user (default 1000); past it the user's oldest finished one is forgotten. */
  maxEntriesPerUser?: number;
  /** Result bytes kept per user (default 64 MiB); past it the user's oldest finished ones are forgotten. */
  maxBytesPerUser?: number;
  /** Keys kept in all (default 20,000); past it the oldest finished one of anyone is forgotten. */
  maxEntries?: number;
  /** The clock (tests). */
  now?: () => number;
}

interface Entry {
  userId: string;
  fingerprint: string;
  result: Promise<unknown>;
  settled: boolean;
  bytes: number;
  at: number;
}

interface Usage {
  entries: number;
  bytes: number;
}

// Keys order-independent, so the same input sent with its fields in another order is the same input.
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, v]) => [k, canonical(v)]),
    );
  }
  return value;
}

/**
 * Results of calls made with an idempotency key, per user and procedure, for a bounded time: the same user
 * repeating the call with the same key and the same input gets the first call's result (waiting for it while it
 * runs) and the work is done once; the same key with another input is refused (IDEMPOTENCY_KEY_REUSED).
 *
 * A call that fails before its work started (`markStarted` not called: a refusal, a session not running) is
 * forgotten, so a retry may do it; one that fails after is kept, so a retry gets the same error and never runs
 * the command a second time. Memory is bounded per user and in all; only finished entries are evicted (oldest
 * first), so a running call is never run twice, and one user's keys never push out another user's unless the
 * global cap is reached.
 */
export class IdempotencyCache {
  readonly #entries = new Map<string, Entry>();
  readonly #usage = new Map<string, Usage>();
  readonly #windowMs: number;
  readonly #maxEntriesPerUser: number;
  readonly #maxBytesPerUser: number;
  readonly #maxEntries: number;
  readonly #now: () => number;

  constructor(options: IdempotencyCacheOptions = {}) {
    this.#windowMs = options.windowMs ?? IDEMPOTENCY_WINDOW_MS;
    this.#maxEntriesPerUser = options.maxEntriesPerUser ?? 1000;
    this.#maxBytesPerUser = options.maxBytesPerUser ?? 64 * 1024 * 1024;
    this.#maxEntries = options.maxEntries ?? 20_000;
    this.#now = options.now ?? Date.now;
  }

  /** Keys held now. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Runs `work` once per (user, scope, key) within the window. `input` is what the key promises: the same key with
   * a different input is refused. `work` calls `markStarted()` once its side effect may have begun; `sizeOf`
   * estimates a result's bytes for the memory bound.
   */
  run<T>(
    userId: string,
    scope: string,
    key: string,
    input: unknown,
    work: (markStarted: () => void) => Promise<T>,
    sizeOf: (result: T) => number = () => 256,
  ): Promise<T> {
    this.#expire();
    const id = `${userId}\u0000${scope}\u0000${key}`;
    const fingerprint = createHash('sha256')
      .update(JSON.stringify(canonical(input)))
      .digest('base64url');
    const held = this.#entries.get(id);
    if (held) {
      if (held.fingerprint !== fingerprint) {
        throw new AppError(
          'IDEMPOTENCY_KEY_REUSED',
          `idempotency key ${JSON.stringify(key)} was used with another input in the last ` +
            `${Math.round(this.#windowMs / 60_000)} minutes: use a new key for a new call`,
        );
      }
      return held.result as Promise<T>;
    }
    let started = false;
    const entry: Entry = {
      userId,
      fingerprint,
      result: Promise.resolve(),
      settled: false,
      bytes: 0,
      at: this.#now(),
    };
    const result = work(() => {
      started = true;
    }).then(
      (value) => {
        entry.settled = true;
        if (this.#entries.get(id) === entry) {
          entry.bytes = sizeOf(value);
          this.#use(userId, 0, entry.bytes);
          this.#evict(userId);
        }
        return value;
      },
      (error: unknown) => {
        entry.settled = true;
        if (!started) this.#forget(id);
        throw error;
      },
    );
    // A retry that never comes must not leave an unhandled rejection behind.
    result.catch(() => undefined);
    entry.result = result;
    this.#entries.set(id, entry);
    this.#use(userId, 1, 0);
    this.#evict(userId);
    return result;
  }

  #use(userId: string, entries: number, bytes: number): void {
    const u = this.#usage.get(userId) ?? { entries: 0, bytes: 0 };
    u.entries += entries;
    u.bytes += bytes;
    if (u.entries <= 0) this.#usage.delete(userId);
    else this.#usage.set(userId, u);
  }

  #forget(id: string): void {
    const entry = this.#entries.get(id);
    if (!entry) return;
    this.#entries.delete(id);
    this.#use(entry.userId, -1, -entry.bytes);
  }

  #expire(): void {
    const cutoff = this.#now() - this.#windowMs;
    // The map is in insertion order, which is age order.
    for (const [id, entry] of this.#entries) {
      if (entry.at > cutoff) break;
      if (entry.settled) this.#forget(id);
    }
  }

  #evict(userId: string): void {
    const over = () => {
      const u = this.#usage.get(userId);
      return u !== undefined && (u.entries > this.#maxEntriesPerUser || u.bytes > this.#maxBytesPerUser);
    };
    if (over()) {
      for (const [id, entry] of this.#entries) {
        if (!over()) break;
        if (entry.userId === userId && entry.settled) this.#forget(id);
      }
    }
    if (this.#entries.size > this.#maxEntries) {
      for (const [id, entry] of this.#entries) {
        if (this.#entries.size <= this.#maxEntries) break;
        if (entry.settled) this.#forget(id);
      }
    }
  }
}
