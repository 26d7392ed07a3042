import { describe, expect, it } from 'vitest';
import { AppError } from '../core/errors.ts';
import { IdempotencyCache } from './idempotency.ts';

/** Work that counts its runs and resolves when told to. */
function work<T>(value: T) {
  const waiting: (() => void)[] = [];
  const state = {
    runs: 0,
    release: () => {
      for (const r of waiting.splice(0)) r();
    },
  };
  const fn = (markStarted: () => void) => {
    state.runs++;
    markStarted();
    return new Promise<T>((resolve) => {
      waiting.push(() => resolve(value));
    });
  };
  return { state, fn };
}

describe('IdempotencyCache', () => {
  it('runs once per user and key; a repeat while it runs waits for the same result', async () => {
    const cache = new IdempotencyCache();
    const w = work('result');
    const a = cache.run('usr_a', 'exec.run', 'key-1', { cmd: ['x'], env: { A: '1', B: '2' } }, w.fn);
    // The same input with its keys in another order is the same input.
    const b = cache.run('usr_a', 'exec.run', 'key-1', { env: { B: '2', A: '1' }, cmd: ['x'] }, w.fn);
    w.state.release();
    expect(await a).toBe('result');
    expect(await b).toBe('result');
    expect(await cache.run('usr_a', 'exec.run', 'key-1', { cmd: ['x'], env: { A: '1', B: '2' } }, w.fn)).toBe(
      'result',
    );
    expect(w.state.runs).toBe(1);
  });

  it('refuses the same key with another input; other users and scopes have keys of their own', async () => {
    const cache = new IdempotencyCache();
    const w = work(1);
    const first = cache.run('usr_a', 'exec.run', 'key-1', { cmd: ['a'] }, w.fn);
    expect(() => cache.run('usr_a', 'exec.run', 'key-1', { cmd: ['b'] }, w.fn)).toThrow(
      expect.objectContaining({ code: 'IDEMPOTENCY_KEY_REUSED' }),
    );
    void cache.run('usr_b', 'exec.run', 'key-1', { cmd: ['b'] }, w.fn);
    void cache.run('usr_a', 'exec.start', 'key-1', { cmd: ['b'] }, w.fn);
    expect(w.state.runs).toBe(3);
    w.state.release();
    await first;
  });

  it('forgets a call that failed before it started, keeps one that failed after', async () => {
    const cache = new IdempotencyCache();
    let runs = 0;
    const refused = () => {
      runs++;
      return Promise.reject(new AppError('INVALID_STATE', 'session is stopped'));
    };
    await expect(cache.run('usr_a', 's', 'key-1', {}, refused)).rejects.toThrow('stopped');
    await expect(cache.run('usr_a', 's', 'key-1', {}, refused)).rejects.toThrow('stopped');
    expect(runs).toBe(2); // nothing ran, so a retry may

    const failedLate = (markStarted: () => void) => {
      runs++;
      markStarted();
      return Promise.reject(new AppError('INTERNAL', 'the sandbox died'));
    };
    await expect(cache.run('usr_a', 's', 'key-2', {}, failedLate)).rejects.toThrow('died');
    await expect(cache.run('usr_a', 's', 'key-2', {}, failedLate)).rejects.toThrow('died');
    expect(runs).toBe(3); // the command may have run: a retry gets the same error, never a second run
  });

  it('is bounded: per user by entries and bytes, and forgets keys after the window', async () => {
    let now = 0;
    const cache = new IdempotencyCache({
      maxEntriesPerUser: 3,
      maxBytesPerUser: 1000,
      windowMs: 1000,
      now: () => now,
    });
    const done = (v: number) => () => Promise.resolve(v);
    for (let i = 0; i < 5; i++) await cache.run('usr_a', 's', `key-${i}`, {}, done(i));
    await cache.run('usr_b', 's', 'key-b', {}, done(9));
    expect(cache.size).toBe(4); // alice's 3 newest and bob's one: alice's flood did not push bob's out
    let runs = 0;
    await cache.run('usr_b', 's', 'key-b', {}, () => Promise.resolve(++runs));
    expect(runs).toBe(0);
    await cache.run('usr_a', 's', 'big', {}, done(1), () => 2000); // over the byte cap: evicts alice's oldest
    expect(cache.size).toBeLessThanOrEqual(3);
    now = 5000;
    await cache.run('usr_b', 's', 'key-b', {}, () => Promise.resolve(++runs));
    expect(runs).toBe(1); // the window passed: a new call
  });
});
