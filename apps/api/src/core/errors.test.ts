import { openDb, StoreError, sql } from '@studio/db';
import { IsolationError } from '@studio/isolation';
import { filesReadInput, filesWriteInput, PolicyError } from '@studio/policy';
import { TRPCError } from '@trpc/server';
import { describe, expect, it } from 'vitest';
import { AppError, mapError, toTRPCError } from './errors.ts';

function zodErrorOf(
  schema: { safeParse(v: unknown): { success: boolean; error?: unknown } },
  value: unknown,
) {
  const r = schema.safeParse(value);
  if (r.success) throw new Error('expected a refusal');
  return r.error;
}

describe('mapError: the one mapping from failures to client-visible codes', () => {
  it.each([
    ['SESSION_LIMIT', 'PRECONDITION_FAILED'],
    ['NOT_FOUND', 'NOT_FOUND'],
    ['UNAUTHENTICATED', 'UNAUTHORIZED'],
    ['TOKEN_REVOKED', 'UNAUTHORIZED'],
    ['PASSWORD_CHANGE_REQUIRED', 'FORBIDDEN'],
    ['FORBIDDEN', 'FORBIDDEN'],
    ['FILE_TOO_LARGE', 'PAYLOAD_TOO_LARGE'],
    ['INVALID_STATE', 'CONFLICT'],
  ] as const)('AppError %s → %s, message kept', (code, trpc) => {
    expect(mapError(new AppError(code, 'do this instead'))).toEqual({
      trpcCode: trpc,
      studioCode: code,
      message: 'do this instead',
      hidden: false,
    });
  });

  it.each([
    ['SESSION_LIMIT', 'SESSION_LIMIT', 'PRECONDITION_FAILED'],
    ['CONFLICT', 'ALREADY_EXISTS', 'CONFLICT'],
    ['OWNER_INACTIVE', 'UNAUTHENTICATED', 'UNAUTHORIZED'],
  ] as const)(
    'StoreError %s → %s / %s, message kept (as the AppError the store threw before)',
    (code, app, trpc) => {
      expect(mapError(new StoreError(code, 'do this instead'))).toEqual({
        trpcCode: trpc,
        studioCode: app,
        message: 'do this instead',
        hidden: false,
      });
    },
  );

  it.each(['SCHEMA_TOO_NEW', 'QUERY_FAILED', 'INVALID_INPUT'] as const)(
    'StoreError %s is INTERNAL with its message hidden (it may name hosts or SQL)',
    (code) => {
      expect(mapError(new StoreError(code, 'relation "users" at 10.0.0.5'))).toEqual({
        trpcCode: 'INTERNAL_SERVER_ERROR',
        studioCode: 'INTERNAL',
        message: expect.not.stringContaining('10.0.0.5'),
        hidden: true,
      });
    },
  );

  it.each([
    ['PATH_TRAVERSAL', 'BAD_REQUEST'],
    ['TOKEN_EXPIRED', 'UNAUTHORIZED'],
    ['TOKEN_INVALID', 'UNAUTHORIZED'],
    ['RATE_LIMITED', 'TOO_MANY_REQUESTS'],
  ] as const)('PolicyError %s → %s', (code, trpc) => {
    expect(mapError(new PolicyError(code, 'fix it'))).toMatchObject({ trpcCode: trpc, studioCode: code });
  });

  it('hides server misconfiguration (KEY_INVALID) as INTERNAL', () => {
    const m = mapError(new PolicyError('KEY_INVALID', 'key /etc/secret is short'));
    expect(m).toMatchObject({ trpcCode: 'INTERNAL_SERVER_ERROR', studioCode: 'INTERNAL', hidden: true });
    expect(m.message).not.toContain('/etc');
  });

  it('carries the policy code of a schema refusal (zod issue params.policyCode)', () => {
    const error = zodErrorOf(filesReadInput, {
      sessionId: 'ses_aaaaaaaaaaaaaaaaaaaa',
      path: '../etc/passwd',
    });
    expect(mapError(error)).toMatchObject({ trpcCode: 'BAD_REQUEST', studioCode: 'PATH_TRAVERSAL' });
  });

  it('maps size refusals to PAYLOAD_TOO_LARGE / INPUT_TOO_LARGE', () => {
    const big = 'x'.repeat(10 * 1024 * 1024 + 1);
    const error = zodErrorOf(filesWriteInput, {
      sessionId: 'ses_aaaaaaaaaaaaaaaaaaaa',
      path: 'a',
      content: big,
    });
    expect(mapError(error)).toMatchObject({ trpcCode: 'PAYLOAD_TOO_LARGE', studioCode: 'INPUT_TOO_LARGE' });
  });

  it('maps other input errors to INPUT_INVALID with the field named', () => {
    const error = zodErrorOf(filesReadInput, { sessionId: 'nope', path: 'a' });
    const m = mapError(error);
    expect(m).toMatchObject({ trpcCode: 'BAD_REQUEST', studioCode: 'INPUT_INVALID' });
    expect(m.message).toMatch(/^sessionId: /);
  });

  it.each([
    ['NOT_FOUND', 'NOT_FOUND'],
    ['TIMEOUT', 'TIMEOUT'],
    ['FORBIDDEN', 'FORBIDDEN'],
    ['ALREADY_EXISTS', 'CONFLICT'],
    ['UNSUPPORTED', 'NOT_IMPLEMENTED'],
    ['INVALID_INPUT', 'BAD_REQUEST'],
  ] as const)('IsolationError %s → %s', (code, trpc) => {
    expect(mapError(new IsolationError(code, 'm'))).toMatchObject({
      trpcCode: trpc,
      studioCode: code,
      message: 'm',
    });
  });

  it('hides backend unavailability details (they can name host paths)', () => {
    const m = mapError(new IsolationError('UNAVAILABLE', 'seccomp profile not found at /srv/x'));
    expect(m).toMatchObject({
      trpcCode: 'SERVICE_UNAVAILABLE',
      studioCode: 'BACKEND_UNAVAILABLE',
      hidden: true,
    });
    expect(m.message).not.toContain('/srv');
  });

  it('hides unknown errors completely', () => {
    const m = mapError(new Error('relation "users" does not exist at /home/x'));
    expect(m).toMatchObject({ trpcCode: 'INTERNAL_SERVER_ERROR', studioCode: 'INTERNAL', hidden: true });
    expect(m.message).not.toMatch(/users|home/);
  });

  it('looks through the TRPCError tRPC wraps around thrown errors', () => {
    const wrapped = new TRPCError({
      code: 'INTERNAL_SERVER_ERROR',
      cause: new AppError('NOT_FOUND', 'gone'),
    });
    expect(mapError(wrapped)).toMatchObject({ trpcCode: 'NOT_FOUND', studioCode: 'NOT_FOUND' });
    const own = new TRPCError({ code: 'CONFLICT', message: 'x', cause: new Error('internal') });
    expect(mapError(own)).toMatchObject({ trpcCode: 'CONFLICT', studioCode: 'CONFLICT' });
  });

  it('toTRPCError keeps the mapping on the cause and is idempotent', () => {
    const e = toTRPCError(new AppError('SESSION_LIMIT', 'too many'));
    expect(e.code).toBe('PRECONDITION_FAILED');
    expect(toTRPCError(e)).toBe(e);
  });
});

describe('mapError: numbers over their bound', () => {
  it('maps them to LIMIT_EXCEEDED (400), not a payload size', async () => {
    const { sessionCreateInput } = await import('@studio/policy');
    const r = sessionCreateInput.safeParse({
      image: 'studio-sandbox:latest',
      resources: { memoryMb: 1_000_000 },
    });
    expect(r.success).toBe(false);
    expect(mapError(r.error)).toMatchObject({ trpcCode: 'BAD_REQUEST', studioCode: 'LIMIT_EXCEEDED' });
  });
});

describe('mapError: the store is down (retryable, never INTERNAL)', () => {
  it('StoreError UNAVAILABLE is UNAVAILABLE / 503 with Retry-After, its message (hosts, ports) hidden', () => {
    const mapped = mapError(new StoreError('UNAVAILABLE', 'connect ECONNREFUSED 10.0.0.5:5432'));
    expect(mapped).toEqual({
      trpcCode: 'SERVICE_UNAVAILABLE',
      studioCode: 'UNAVAILABLE',
      message: expect.stringMatching(/database is unavailable.*retry/),
      hidden: true,
      retryAfterSeconds: 5,
    });
    expect(mapped.message).not.toContain('10.0.0.5');
  });

  it('a raw driver connection error that did not pass through the Store is UNAVAILABLE too', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    expect(mapError(refused).studioCode).toBe('UNAVAILABLE');
    expect(mapError(new Error('Connection terminated unexpectedly')).studioCode).toBe('UNAVAILABLE');
    expect(mapError(Object.assign(new Error('terminating connection'), { code: '57P01' })).studioCode).toBe(
      'UNAVAILABLE',
    );
    // Wrapped by tRPC, as a procedure's failure reaches the formatter.
    expect(mapError(new TRPCError({ code: 'INTERNAL_SERVER_ERROR', cause: refused })).trpcCode).toBe(
      'SERVICE_UNAVAILABLE',
    );
  });

  it('a closed PGlite (the real error) is UNAVAILABLE', async () => {
    const db = await openDb({});
    await db.close();
    const error = await db.orm.execute(sql`select 1`).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeDefined();
    expect(mapError(error).studioCode).toBe('UNAVAILABLE');
    // Booting PGlite takes seconds, more on a loaded machine.
  }, 90_000);

  it('an isolation error caused by a reset socket stays an isolation error', () => {
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    expect(mapError(new IsolationError('UNAVAILABLE', 'agent gone', { cause: reset })).studioCode).toBe(
      'BACKEND_UNAVAILABLE',
    );
  });

  it('an AppError UNAVAILABLE (the server draining) keeps its message and its own Retry-After', () => {
    expect(mapError(new AppError('UNAVAILABLE', 'shutting down', { retryAfterSeconds: 2 }))).toEqual({
      trpcCode: 'SERVICE_UNAVAILABLE',
      studioCode: 'UNAVAILABLE',
      message: 'shutting down',
      hidden: false,
      retryAfterSeconds: 2,
    });
  });
});
