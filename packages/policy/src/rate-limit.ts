import { PolicyError } from './errors.ts';
import { isIntInRange } from './lib/text.ts';

/** The largest `limit` a limiter accepts; it is also the most timestamps kept per key. */
export const MAX_RATE_LIMIT = 100_000;
/** The longest window a limiter accepts: one week. */
export const MAX_RATE_WINDOW_MS = 7 * 24 * 60 * 60 * 1000;
/** Longest key accepted by `take`/`reset`, in characters. */
export const MAX_RATE_LIMIT_KEY_LENGTH = 512;

/** A limit of `limit` units per sliding `windowMs`. */
export interface RateLimit {
  readonly limit: number;
  readonly windowMs: number;
}

/** 1000 WebSocket messages a minute, per session (SECURITY.md §5). */
export const DEFAULT_WS_MESSAGE_LIMIT: RateLimit = Object.freeze({ limit: 1000, windowMs: 60_000 });
/** 10 login attempts a minute, per username and client address (key them with {@link rateLimitKey}). */
export const DEFAULT_LOGIN_LIMIT: RateLimit = Object.freeze({ limit: 10, windowMs: 60_000 });
/** 10 session creations a minute, per user (the live-session cap of 5 applies separately). */
export const DEFAULT_SESSION_CREATE_LIMIT: RateLimit = Object.freeze({ limit: 10, windowMs: 60_000 });

/**
 * The state kept for one key: the times (clock ms, ascending) of the units taken in the current window, one
 * entry per unit. Plain JSON, so a shared store can serialise it.
 */
export interface RateLimitState {
  readonly hits: readonly number[];
}

/**
 * Where limiter state lives. Synchronous and tiny on purpose so an in-process store is the default and a
 * shared one (with its own local cache) can implement it later. `expiresAtMs` is the clock time after which the
 * state is worthless and may be dropped.
 */
export interface RateLimitStore {
  get(key: string): RateLimitState | undefined;
  set(key: string, state: RateLimitState, expiresAtMs: number): void;
  delete(key: string): void;
}

/** Options for {@link createMemoryRateLimitStore}. */
export interface MemoryRateLimitStoreOptions {
  /** Most keys kept; 1..10 000 000, default 100 000. */
  readonly maxKeys?: number;
  /** Clock in ms used to drop expired keys; default `Date.now`. */
  readonly clock?: () => number;
}

/**
 * An in-memory {@link RateLimitStore} with bounded memory.
 *
 * Security meaning (CWE-400): an attacker who invents a new key per request (usernames, addresses) cannot grow
 * memory without bound. Expired keys are dropped as new ones are written; beyond `maxKeys` live keys, the least
 * recently written are forgotten (which resets their limit: the lesser evil than exhausting memory, and only
 * reachable by someone already spraying `maxKeys` distinct keys inside one window). Memory is therefore at most
 * about `maxKeys` × (a key of ≤ 512 characters + `limit` numbers).
 */
export function createMemoryRateLimitStore(options: MemoryRateLimitStoreOptions = {}): RateLimitStore {
  const maxKeys = options.maxKeys ?? 100_000;
  const clock = options.clock ?? Date.now;
  if (!isIntInRange(maxKeys, 1, 10_000_000)) {
    throw new PolicyError('POLICY_INVALID', 'maxKeys must be an integer in 1..10000000');
  }
  if (typeof clock !== 'function') throw new PolicyError('POLICY_INVALID', 'clock must be a function');
  // Map order is write order (set() re-inserts), so the front holds the least recently written keys.
  const entries = new Map<string, { state: RateLimitState; expiresAtMs: number }>();

  const evict = (): void => {
    const now = clock();
    for (const [key, entry] of entries) {
      if (entry.expiresAtMs > now) break;
      entries.delete(key);
    }
    if (entries.size <= maxKeys) return;
    for (const [key, entry] of entries) {
      if (entry.expiresAtMs <= now) entries.delete(key);
    }
    // Trim below the cap so a flood pays for this full pass only once per tenth of maxKeys new keys.
    const target = Math.floor(maxKeys * 0.9);
    for (const key of entries.keys()) {
      if (entries.size <= target) break;
      entries.delete(key);
    }
  };

  return {
    get(key) {
      const entry = entries.get(key);
      if (entry === undefined) return undefined;
      if (entry.expiresAtMs <= clock()) {
        entries.delete(key);
        return undefined;
      }
      return entry.state;
    },
    set(key, state, expiresAtMs) {
      entries.delete(key);
      entries.set(key, { state, expiresAtMs });
      evict();
    },
    delete(key) {
      entries.delete(key);
    },
  };
}

/** Options for {@link createRateLimiter}. */
export interface RateLimiterOptions {
  /** Units allowed per window: an integer in 1..100 000. */
  readonly limit: number;
  /** The sliding window in ms: an integer in 1..one week. */
  readonly windowMs: number;
  /** Clock in ms; default `Date.now`. Inject a fake one in tests. */
  readonly clock?: () => number;
  /** Where state lives; default a fresh {@link createMemoryRateLimitStore} on the same clock. */
  readonly store?: RateLimitStore;
}

/** The verdict of one {@link RateLimiter.take}. */
export interface RateLimitResult {
  /** Whether the units were granted (and counted). */
  readonly allowed: boolean;
  /** Units still available in the current window after this call. */
  readonly remaining: number;
  /** When refused: ms until the requested units would fit (always > 0). When allowed: 0. */
  readonly retryAfterMs: number;
}

/** A keyed sliding-window limiter. */
export interface RateLimiter {
  readonly limit: number;
  readonly windowMs: number;
  /** Takes `cost` units (default 1, at most `limit`) for `key` if they fit in the window. */
  take(key: string, cost?: number): RateLimitResult;
  /** Forgets `key` (for example after a successful login). */
  reset(key: string): void;
}

function checkKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_RATE_LIMIT_KEY_LENGTH) {
    throw new PolicyError(
      'INPUT_INVALID',
      `rate-limit key must be a string of 1-${MAX_RATE_LIMIT_KEY_LENGTH} characters`,
    );
  }
  return key;
}

function readHits(state: RateLimitState | undefined, since: number): number[] {
  if (state === undefined) return [];
  const hits: unknown = (state as { hits?: unknown }).hits;
  if (!Array.isArray(hits) || hits.length > MAX_RATE_LIMIT || !hits.every((t) => Number.isFinite(t))) {
    throw new PolicyError('POLICY_INVALID', 'rate-limit store returned a malformed state; clear the store');
  }
  const live = (hits as number[]).filter((t) => t > since);
  return live.sort((a, b) => a - b);
}

/**
 * Creates a keyed limiter: at most `limit` units in ANY window of `windowMs` (an exact sliding log, not a fixed
 * window that allows 2× at a boundary, nor a bucket that allows a burst on top of the rate).
 *
 * Security meaning (CWE-400, SECURITY.md §5): the building block for the WebSocket message limit
 * ({@link DEFAULT_WS_MESSAGE_LIMIT}), login ({@link DEFAULT_LOGIN_LIMIT}) and session creation
 * ({@link DEFAULT_SESSION_CREATE_LIMIT}). Refused calls are not counted, so a client that keeps hammering is
 * refused until its own earlier traffic ages out, and `retryAfterMs` says exactly when. Memory: at most `limit`
 * numbers per live key, and keys expire `windowMs` after their last allowed unit (the default store also caps
 * the number of keys). Invalid options throw POLICY_INVALID; an invalid key or cost throws INPUT_INVALID.
 */
export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  if (typeof options !== 'object' || options === null) {
    throw new PolicyError('POLICY_INVALID', 'rate limiter needs { limit, windowMs }');
  }
  const { limit, windowMs } = options;
  if (!isIntInRange(limit, 1, MAX_RATE_LIMIT)) {
    throw new PolicyError('POLICY_INVALID', `limit must be an integer in 1..${MAX_RATE_LIMIT}`);
  }
  if (!isIntInRange(windowMs, 1, MAX_RATE_WINDOW_MS)) {
    throw new PolicyError('POLICY_INVALID', `windowMs must be an integer in 1..${MAX_RATE_WINDOW_MS}`);
  }
  const clock = options.clock ?? Date.now;
  if (typeof clock !== 'function') throw new PolicyError('POLICY_INVALID', 'clock must be a function');
  const store = options.store ?? createMemoryRateLimitStore({ clock });

  return {
    limit,
    windowMs,
    take(key, cost = 1) {
      checkKey(key);
      if (!isIntInRange(cost, 1, limit)) {
        throw new PolicyError('INPUT_INVALID', `cost must be an integer in 1..${limit} (the limit)`);
      }
      const now = clock();
      if (!Number.isFinite(now)) throw new PolicyError('POLICY_INVALID', 'clock returned a non-finite time');
      const hits = readHits(store.get(key), now - windowMs);
      if (hits.length + cost <= limit) {
        const last = hits[hits.length - 1];
        for (let i = 0; i < cost; i++) hits.push(now);
        if (last !== undefined && now < last) hits.sort((a, b) => a - b); // the clock stepped back
        store.set(key, { hits }, Math.max(now, hits[hits.length - 1] as number) + windowMs);
        return { allowed: true, remaining: limit - hits.length, retryAfterMs: 0 };
      }
      // The oldest (hits + cost - limit) units must age out before `cost` more fit.
      const oldestBlocking = hits[hits.length + cost - limit - 1] as number;
      return {
        allowed: false,
        remaining: Math.max(0, limit - hits.length),
        retryAfterMs: Math.max(1, oldestBlocking + windowMs - now),
      };
    },
    reset(key) {
      store.delete(checkKey(key));
    },
  };
}

/**
 * Builds an unambiguous rate-limit key from parts, e.g. `rateLimitKey('login', username, ip)`. Security meaning:
 * joining with a separator lets `('a|b', 'c')` and `('a', 'b|c')` share a budget; JSON encoding cannot collide.
 * Takes 1-4 string parts; the key must fit {@link MAX_RATE_LIMIT_KEY_LENGTH} (INPUT_INVALID otherwise).
 */
export function rateLimitKey(...parts: string[]): string {
  if (parts.length === 0 || parts.length > 4)
    throw new PolicyError('INPUT_INVALID', 'rateLimitKey takes 1-4 parts');
  if (!parts.every((part) => typeof part === 'string')) {
    throw new PolicyError('INPUT_INVALID', 'rate-limit key parts must be strings');
  }
  return checkKey(JSON.stringify(parts));
}

/**
 * The error to throw when {@link RateLimiter.take} refuses: code RATE_LIMITED, with a message telling the
 * client when to retry. The API maps it to HTTP 429 / tRPC TOO_MANY_REQUESTS (and closes a WebSocket with 1008).
 */
export function rateLimitedError(result: RateLimitResult, what = 'requests'): PolicyError {
  const seconds = Math.max(1, Math.ceil(result.retryAfterMs / 1000));
  return new PolicyError('RATE_LIMITED', `too many ${what}; retry in ${seconds} s`);
}
