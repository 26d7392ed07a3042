import { describe, expect, it } from 'vitest';
import { isPolicyError, PolicyError } from './errors.ts';
import {
  defaultPolicy,
  MAX_TOKEN_LENGTH,
  parsePolicy,
  SANDBOX_LIMIT_BOUNDS,
  sandboxResourcesSchema,
} from './limits.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

function refusal(config: unknown): PolicyError {
  try {
    parsePolicy(config);
  } catch (e) {
    if (isPolicyError(e)) return e;
    throw e;
  }
  throw new Error(`parsePolicy accepted ${JSON.stringify(config)}`);
}

describe('defaultPolicy', () => {
  it('holds the numbers SECURITY.md requires', () => {
    expect(defaultPolicy.maxLiveSessionsPerUser).toBe(5);
    expect(defaultPolicy.sandbox.memoryBytes).toBe(GiB);
    expect(defaultPolicy.sandbox.swapBytes).toBe(defaultPolicy.sandbox.memoryBytes);
    expect(defaultPolicy.sandbox.cpus).toBe(1);
    expect(defaultPolicy.sandbox.pids).toBe(512);
    expect(defaultPolicy.sandbox.diskBytes).toBe(2 * GiB);
    expect(defaultPolicy.sandbox.inodes).toBe(200_000);
    expect(defaultPolicy.sandbox.tmpBytes).toBe(256 * MiB);
    expect(defaultPolicy.exec).toEqual({
      defaultTimeoutMs: 30_000,
      maxTimeoutMs: 600_000,
      maxOutputBytes: MiB,
      maxStdinBytes: MiB,
    });
    expect(defaultPolicy.files).toEqual({ maxFileBytes: 10 * MiB, maxListEntries: 5000 });
    expect(defaultPolicy.session).toEqual({
      idleTimeoutMs: 30 * 60_000,
      ttlMs: 8 * 3_600_000,
      pauseAfterMs: 10 * 60_000,
    });
    expect(defaultPolicy.snapshots).toEqual({ maxBytesPerUser: 10 * 1024 * MiB, maxForks: 10 });
    expect(defaultPolicy.websocket).toEqual({
      maxMessageBytes: 64 * 1024,
      authTimeoutMs: 5000,
      messagesPerMinute: 1000,
      heartbeatMs: 30_000,
    });
    expect(defaultPolicy.terminal).toEqual({ maxCols: 500, maxRows: 200 });
    expect(defaultPolicy.preview.timeoutMs).toBeGreaterThan(0);
    expect(MAX_TOKEN_LENGTH).toBe(4096);
  });

  it('is deep-frozen', () => {
    expect(Object.isFrozen(defaultPolicy)).toBe(true);
    expect(Object.isFrozen(defaultPolicy.sandbox)).toBe(true);
    expect(() => {
      (defaultPolicy.sandbox as { memoryBytes: number }).memoryBytes = 1;
    }).toThrow(TypeError);
    expect(defaultPolicy.sandbox.memoryBytes).toBe(GiB);
  });

  it('is itself a valid policy', () => {
    expect(parsePolicy(defaultPolicy)).toEqual(defaultPolicy);
  });
});

describe('parsePolicy', () => {
  it('returns the defaults for undefined or {}', () => {
    expect(parsePolicy(undefined)).toEqual(defaultPolicy);
    expect(parsePolicy({})).toEqual(defaultPolicy);
  });

  it('deep-merges partial overrides and leaves the rest at defaults', () => {
    const p = parsePolicy({ exec: { maxOutputBytes: 2 * MiB }, maxLiveSessionsPerUser: 3 });
    expect(p.exec.maxOutputBytes).toBe(2 * MiB);
    expect(p.exec.defaultTimeoutMs).toBe(30_000);
    expect(p.maxLiveSessionsPerUser).toBe(3);
    expect(p.sandbox).toEqual(defaultPolicy.sandbox);
    expect(Object.isFrozen(p.exec)).toBe(true);
  });

  it('moves swap with memory when only memory is overridden', () => {
    const p = parsePolicy({ sandbox: { memoryBytes: 2 * GiB } });
    expect(p.sandbox.memoryBytes).toBe(2 * GiB);
    expect(p.sandbox.swapBytes).toBe(2 * GiB);
  });

  it('treats an undefined field as "keep the default"', () => {
    expect(parsePolicy({ sandbox: { memoryBytes: undefined } }).sandbox.memoryBytes).toBe(GiB);
  });

  it('does not mutate the defaults', () => {
    parsePolicy({ sandbox: { memoryBytes: 2 * GiB } });
    expect(defaultPolicy.sandbox.memoryBytes).toBe(GiB);
  });

  it.each<[string, unknown, string]>([
    ['swap different from memory', { sandbox: { swapBytes: 2 * GiB } }, 'sandbox.swapBytes'],
    [
      'swap larger than new memory',
      { sandbox: { memoryBytes: GiB / 2, swapBytes: GiB } },
      'sandbox.swapBytes',
    ],
    ['pids 0', { sandbox: { pids: 0 } }, 'sandbox.pids'],
    ['pids huge', { sandbox: { pids: 1_000_000 } }, 'sandbox.pids'],
    ['negative memory', { sandbox: { memoryBytes: -1 } }, 'sandbox.memoryBytes'],
    ['fractional memory', { sandbox: { memoryBytes: 1.5 * GiB + 0.5 } }, 'sandbox.memoryBytes'],
    ['cpus 0', { sandbox: { cpus: 0 } }, 'sandbox.cpus'],
    ['cpus Infinity', { sandbox: { cpus: Number.POSITIVE_INFINITY } }, 'sandbox.cpus'],
    ['cpus NaN', { sandbox: { cpus: Number.NaN } }, 'sandbox.cpus'],
    ['tmp larger than memory', { sandbox: { tmpBytes: 2 * GiB } }, 'sandbox.tmpBytes'],
    ['more than 5 sessions', { maxLiveSessionsPerUser: 6 }, 'maxLiveSessionsPerUser'],
    ['0 sessions', { maxLiveSessionsPerUser: 0 }, 'maxLiveSessionsPerUser'],
    ['string number', { maxLiveSessionsPerUser: '5' }, 'maxLiveSessionsPerUser'],
    ['auth timeout over 5 s', { websocket: { authTimeoutMs: 10_000 } }, 'websocket.authTimeoutMs'],
    ['default timeout over max', { exec: { defaultTimeoutMs: 700_000 } }, 'exec.defaultTimeoutMs'],
    ['max timeout over an hour', { exec: { maxTimeoutMs: 7_200_000 } }, 'exec.maxTimeoutMs'],
    ['idle over ttl', { session: { idleTimeoutMs: 9 * 3_600_000 } }, 'session.idleTimeoutMs'],
    ['terminal cols over 500', { terminal: { maxCols: 501 } }, 'terminal.maxCols'],
    ['unknown top-level key', { privileged: true }, '(root)'],
    ['unknown nested key', { sandbox: { capAdd: ['SYS_ADMIN'] } }, 'sandbox'],
    ['section not an object', { sandbox: 5 }, 'sandbox'],
  ])('refuses %s with POLICY_INVALID naming %s', (_, config, where) => {
    const e = refusal(config);
    expect(e.code).toBe('POLICY_INVALID');
    expect(e.message).toContain(where);
    expect(e.cause).toBeDefined();
  });

  it.each([null, 5, 'x', [], true])('refuses the non-object %j', (config) => {
    expect(refusal(config).code).toBe('POLICY_INVALID');
  });

  it('returns an object that cannot be changed afterwards', () => {
    const p = parsePolicy({});
    expect(() => {
      (p as { maxLiveSessionsPerUser: number }).maxLiveSessionsPerUser = 100;
    }).toThrow(TypeError);
  });

  it('refusal is a PolicyError instance', () => {
    expect(refusal({ sandbox: { pids: 0 } })).toBeInstanceOf(PolicyError);
  });
});

describe('SANDBOX_LIMIT_BOUNDS and sandboxResourcesSchema', () => {
  const resources = {
    memoryBytes: defaultPolicy.sandbox.memoryBytes,
    cpus: defaultPolicy.sandbox.cpus,
    pids: defaultPolicy.sandbox.pids,
    diskBytes: defaultPolicy.sandbox.diskBytes,
    inodes: defaultPolicy.sandbox.inodes,
    tmpBytes: defaultPolicy.sandbox.tmpBytes,
  };

  it('are the bounds parsePolicy enforces: each edge is accepted, one step past it refused', () => {
    for (const key of ['pids', 'inodes', 'diskBytes'] as const) {
      const { min, max } = SANDBOX_LIMIT_BOUNDS[key];
      expect(parsePolicy({ sandbox: { [key]: min } }).sandbox[key]).toBe(min);
      expect(parsePolicy({ sandbox: { [key]: max } }).sandbox[key]).toBe(max);
      expect(refusal({ sandbox: { [key]: min - 1 } }).message).toContain(`sandbox.${key}`);
      expect(refusal({ sandbox: { [key]: max + 1 } }).message).toContain(`sandbox.${key}`);
      expect(sandboxResourcesSchema.safeParse({ ...resources, [key]: min }).success).toBe(true);
      expect(sandboxResourcesSchema.safeParse({ ...resources, [key]: min - 1 }).success).toBe(false);
      expect(sandboxResourcesSchema.safeParse({ ...resources, [key]: max + 1 }).success).toBe(false);
    }
    expect(Object.isFrozen(SANDBOX_LIMIT_BOUNDS.memoryBytes)).toBe(true);
  });

  it('accepts the default resources and refuses /tmp above memory, fractions and unknown keys', () => {
    expect(sandboxResourcesSchema.parse(resources)).toEqual(resources);
    expect(
      sandboxResourcesSchema.safeParse({ ...resources, tmpBytes: resources.memoryBytes + 1 }).success,
    ).toBe(false);
    expect(sandboxResourcesSchema.safeParse({ ...resources, pids: 100.5 }).success).toBe(false);
    expect(sandboxResourcesSchema.safeParse({ ...resources, cpus: 0.5 }).success).toBe(true);
    expect(sandboxResourcesSchema.safeParse({ ...resources, privileged: true }).success).toBe(false);
  });
});
