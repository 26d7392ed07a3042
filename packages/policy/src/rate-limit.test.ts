import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isPolicyError, type PolicyErrorCode } from './errors.ts';
import {
  createMemoryRateLimitStore,
  createRateLimiter,
  DEFAULT_LOGIN_LIMIT,
  DEFAULT_SESSION_CREATE_LIMIT,
  DEFAULT_WS_MESSAGE_LIMIT,
  type RateLimitState,
  type RateLimitStore,
  rateLimitedError,
  rateLimitKey,
} from './rate-limit.ts';

function codeOf(fn: () => unknown): PolicyErrorCode | 'NO_THROW' {
  try {
    fn();
  } catch (e) {
    if (isPolicyError(e)) return e.code;
    throw e;
  }
  return 'NO_THROW';
}

function fakeClock(start = 1_000_000) {
  let now = start;
  return {
    clock: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('createRateLimiter', () => {
  it('allows exactly `limit`, refuses the next with retryAfterMs > 0, and allows again after the window', () => {
    const t = fakeClock();
    const rl = createRateLimiter({ limit: 5, windowMs: 1000, clock: t.clock });
    for (let i = 0; i < 5; i++) {
      expect(rl.take('k')).toEqual({ allowed: true, remaining: 4 - i, retryAfterMs: 0 });
    }
    const refused = rl.take('k');
    expect(refused.allowed).toBe(false);
    expect(refused.remaining).toBe(0);
    expect(refused.retryAfterMs).toBe(1000);
    t.advance(999);
    expect(rl.take('k').allowed).toBe(false);
    expect(rl.take('k').retryAfterMs).toBe(1);
    t.advance(1);
    // All five were taken at the same instant, so all five aged out together.
    expect(rl.take('k')).toEqual({ allowed: true, remaining: 4, retryAfterMs: 0 });
  });

  it('is a sliding window: never more than `limit` in any window, no burst at a boundary', () => {
    const t = fakeClock();
    const rl = createRateLimiter({ limit: 10, windowMs: 1000, clock: t.clock });
    t.advance(900);
    for (let i = 0; i < 10; i++) expect(rl.take('k').allowed).toBe(true);
    t.advance(200); // a fixed window would have reset here
    expect(rl.take('k').allowed).toBe(false);
    expect(rl.take('k').retryAfterMs).toBe(800);
  });

  it('frees units one by one as they age out', () => {
    const t = fakeClock();
    const rl = createRateLimiter({ limit: 3, windowMs: 100, clock: t.clock });
    rl.take('k');
    t.advance(10);
    rl.take('k');
    t.advance(10);
    rl.take('k');
    expect(rl.take('k')).toEqual({ allowed: false, remaining: 0, retryAfterMs: 80 });
    t.advance(80);
    expect(rl.take('k')).toEqual({ allowed: true, remaining: 0, retryAfterMs: 0 });
    expect(rl.take('k').retryAfterMs).toBe(10);
  });

  it('does not count refused attempts', () => {
    const t = fakeClock();
    const rl = createRateLimiter({ limit: 2, windowMs: 1000, clock: t.clock });
    rl.take('k');
    rl.take('k');
    for (let i = 0; i < 50; i++) {
      t.advance(10);
      expect(rl.take('k').allowed).toBe(false);
    }
    t.advance(500);
    expect(rl.take('k').allowed).toBe(true);
  });

  it('keeps keys independent', () => {
    const t = fakeClock();
    const rl = createRateLimiter({ limit: 1, windowMs: 1000, clock: t.clock });
    expect(rl.take('a').allowed).toBe(true);
    expect(rl.take('a').allowed).toBe(false);
    expect(rl.take('b').allowed).toBe(true);
    expect(rl.take('A').allowed).toBe(true);
  });

  it('charges cost units and reports when that many fit', () => {
    const t = fakeClock();
    const rl = createRateLimiter({ limit: 10, windowMs: 1000, clock: t.clock });
    expect(rl.take('k', 4)).toEqual({ allowed: true, remaining: 6, retryAfterMs: 0 });
    t.advance(100);
    expect(rl.take('k', 6)).toEqual({ allowed: true, remaining: 0, retryAfterMs: 0 });
    t.advance(100);
    // 5 units need the first 4 (t=0) and one of the second batch (t=100) to age out.
    expect(rl.take('k', 5)).toEqual({ allowed: false, remaining: 0, retryAfterMs: 900 });
    expect(rl.take('k', 4)).toEqual({ allowed: false, remaining: 0, retryAfterMs: 800 });
    t.advance(800);
    expect(rl.take('k', 4).allowed).toBe(true);
    expect(rl.take('k', 10).allowed).toBe(false);
  });

  it('reset forgets a key', () => {
    const t = fakeClock();
    const rl = createRateLimiter({ limit: 1, windowMs: 1000, clock: t.clock });
    rl.take('k');
    expect(rl.take('k').allowed).toBe(false);
    rl.reset('k');
    expect(rl.take('k').allowed).toBe(true);
  });

  it('counts units still in the window if the clock steps back', () => {
    const t = fakeClock();
    const rl = createRateLimiter({ limit: 2, windowMs: 1000, clock: t.clock });
    rl.take('k');
    t.advance(-500);
    rl.take('k');
    expect(rl.take('k').allowed).toBe(false);
  });

  it.each<[string, object]>([
    ['limit 0', { limit: 0, windowMs: 1000 }],
    ['negative limit', { limit: -1, windowMs: 1000 }],
    ['fractional limit', { limit: 1.5, windowMs: 1000 }],
    ['NaN limit', { limit: Number.NaN, windowMs: 1000 }],
    ['huge limit', { limit: 1e9, windowMs: 1000 }],
    ['string limit', { limit: '10', windowMs: 1000 }],
    ['windowMs 0', { limit: 1, windowMs: 0 }],
    ['negative windowMs', { limit: 1, windowMs: -5 }],
    ['fractional windowMs', { limit: 1, windowMs: 0.5 }],
    ['infinite windowMs', { limit: 1, windowMs: Number.POSITIVE_INFINITY }],
    ['missing windowMs', { limit: 1 }],
    ['non-function clock', { limit: 1, windowMs: 1, clock: 5 }],
  ])('refuses options with %s (POLICY_INVALID)', (_, options) => {
    expect(codeOf(() => createRateLimiter(options as never))).toBe('POLICY_INVALID');
  });

  it('refuses missing options', () => {
    expect(codeOf(() => createRateLimiter(undefined as never))).toBe('POLICY_INVALID');
  });

  it('refuses bad keys and costs with INPUT_INVALID', () => {
    const rl = createRateLimiter({ limit: 5, windowMs: 1000, clock: () => 0 });
    expect(codeOf(() => rl.take(''))).toBe('INPUT_INVALID');
    expect(codeOf(() => rl.take('x'.repeat(513)))).toBe('INPUT_INVALID');
    expect(codeOf(() => rl.take(1 as unknown as string))).toBe('INPUT_INVALID');
    expect(codeOf(() => rl.take('k', 0))).toBe('INPUT_INVALID');
    expect(codeOf(() => rl.take('k', -1))).toBe('INPUT_INVALID');
    expect(codeOf(() => rl.take('k', 1.5))).toBe('INPUT_INVALID');
    expect(codeOf(() => rl.take('k', 6))).toBe('INPUT_INVALID');
    expect(codeOf(() => rl.reset(''))).toBe('INPUT_INVALID');
  });

  it('refuses a clock that returns a non-finite time', () => {
    const rl = createRateLimiter({ limit: 5, windowMs: 1000, clock: () => Number.NaN });
    expect(codeOf(() => rl.take('k'))).toBe('POLICY_INVALID');
  });

  it('uses a supplied store and refuses malformed state from it', () => {
    const data = new Map<string, RateLimitState>();
    const expiries: number[] = [];
    const store: RateLimitStore = {
      get: (k) => data.get(k),
      set: (k, s, exp) => {
        data.set(k, s);
        expiries.push(exp);
      },
      delete: (k) => {
        data.delete(k);
      },
    };
    const rl = createRateLimiter({ limit: 2, windowMs: 1000, clock: () => 5000, store });
    rl.take('k');
    expect(data.get('k')).toEqual({ hits: [5000] });
    expect(expiries).toEqual([6000]);
    data.set('k', { hits: [5000, 5000] });
    expect(rl.take('k').allowed).toBe(false);
    data.set('bad', { hits: 'nope' } as unknown as RateLimitState);
    expect(codeOf(() => rl.take('bad'))).toBe('POLICY_INVALID');
    data.set('bad', { hits: [Number.NaN] });
    expect(codeOf(() => rl.take('bad'))).toBe('POLICY_INVALID');
  });

  it('property: in any window of windowMs no more than `limit` units are allowed', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 200 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 1, max: 8 })), {
          maxLength: 80,
        }),
        (limit, windowMs, steps) => {
          const t = fakeClock(0);
          const rl = createRateLimiter({ limit, windowMs, clock: t.clock });
          const granted: number[] = [];
          for (const [dt, rawCost] of steps) {
            t.advance(dt);
            const cost = Math.min(rawCost, limit);
            const r = rl.take('k', cost);
            if (r.allowed) for (let i = 0; i < cost; i++) granted.push(t.clock());
            else expect(r.retryAfterMs).toBeGreaterThan(0);
            const now = t.clock();
            expect(granted.filter((g) => g > now - windowMs).length).toBeLessThanOrEqual(limit);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('createMemoryRateLimitStore', () => {
  it('drops expired keys and caps the number of live keys', () => {
    const t = fakeClock(0);
    const store = createMemoryRateLimitStore({ maxKeys: 10, clock: t.clock });
    for (let i = 0; i < 10; i++) store.set(`old${i}`, { hits: [0] }, 100);
    t.advance(100);
    expect(store.get('old0')).toBeUndefined();
    for (let i = 0; i < 1000; i++) store.set(`k${i}`, { hits: [t.clock()] }, t.clock() + 1000);
    let live = 0;
    for (let i = 0; i < 1000; i++) if (store.get(`k${i}`) !== undefined) live++;
    expect(live).toBeLessThanOrEqual(10);
    expect(store.get('k999')).toBeDefined(); // the most recently written survive
  });

  it('limiter memory stays bounded under a key-spraying flood', () => {
    const t = fakeClock(0);
    const store = createMemoryRateLimitStore({ maxKeys: 100, clock: t.clock });
    const rl = createRateLimiter({ limit: 5, windowMs: 60_000, clock: t.clock, store });
    for (let i = 0; i < 10_000; i++) rl.take(`attacker-${i}`);
    let live = 0;
    for (let i = 0; i < 10_000; i++) if (store.get(`attacker-${i}`) !== undefined) live++;
    expect(live).toBeLessThanOrEqual(100);
  });

  it('refuses a bad maxKeys or clock', () => {
    expect(codeOf(() => createMemoryRateLimitStore({ maxKeys: 0 }))).toBe('POLICY_INVALID');
    expect(codeOf(() => createMemoryRateLimitStore({ maxKeys: 1.5 }))).toBe('POLICY_INVALID');
    expect(codeOf(() => createMemoryRateLimitStore({ clock: 'now' as never }))).toBe('POLICY_INVALID');
  });
});

describe('defaults and keys', () => {
  it('matches SECURITY.md: 1000 WebSocket messages a minute', () => {
    expect(DEFAULT_WS_MESSAGE_LIMIT).toEqual({ limit: 1000, windowMs: 60_000 });
    expect(Object.isFrozen(DEFAULT_WS_MESSAGE_LIMIT)).toBe(true);
    expect(DEFAULT_LOGIN_LIMIT).toEqual({ limit: 10, windowMs: 60_000 });
    expect(DEFAULT_SESSION_CREATE_LIMIT.limit).toBeGreaterThan(0);
  });

  it('the WebSocket default allows 1000 and refuses the 1001st', () => {
    const rl = createRateLimiter({ ...DEFAULT_WS_MESSAGE_LIMIT, clock: () => 0 });
    for (let i = 0; i < 1000; i++) expect(rl.take('ses_x').allowed).toBe(true);
    expect(rl.take('ses_x').allowed).toBe(false);
  });

  it('rateLimitKey cannot be made to collide by a separator in a part', () => {
    expect(rateLimitKey('login', 'a|b', 'c')).not.toBe(rateLimitKey('login', 'a', 'b|c'));
    expect(rateLimitKey('login', 'a","b')).not.toBe(rateLimitKey('login', 'a', 'b'));
    expect(rateLimitKey('login', 'alice', '1.2.3.4')).toBe('["login","alice","1.2.3.4"]');
  });

  it('rateLimitKey refuses bad parts', () => {
    expect(codeOf(() => rateLimitKey())).toBe('INPUT_INVALID');
    expect(codeOf(() => rateLimitKey('a', 'b', 'c', 'd', 'e'))).toBe('INPUT_INVALID');
    expect(codeOf(() => rateLimitKey('x'.repeat(600)))).toBe('INPUT_INVALID');
    expect(codeOf(() => rateLimitKey(1 as unknown as string))).toBe('INPUT_INVALID');
  });

  it('rateLimitedError gives RATE_LIMITED with the wait rounded up to seconds', () => {
    const e = rateLimitedError({ allowed: false, remaining: 0, retryAfterMs: 1500 }, 'login attempts');
    expect(e.code).toBe('RATE_LIMITED');
    expect(e.message).toBe('too many login attempts; retry in 2 s');
    expect(rateLimitedError({ allowed: false, remaining: 0, retryAfterMs: 1 }).message).toMatch(
      /retry in 1 s/,
    );
  });
});
