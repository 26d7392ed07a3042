import { cookieRequestRefusal, createRateLimiter, IDE_PROOF_HEADER, rateLimitKey } from '@studio/policy';
import { initTRPC } from '@trpc/server';
import {
  assertPasswordSettled,
  isCredentialError,
  PASSWORD_CHANGE_ALLOWS,
  type Principal,
} from '../auth/auth.ts';
import { assertMayMutate } from '../sessions/control.ts';
import { auditOf, type Context } from './context.ts';
import { goingAway, untilGoingAway } from './drain.ts';
import { AppError, MappedCause, mapError, toTRPCError } from './errors.ts';

const t = initTRPC.context<Context>().create({
  // Subscriptions go over server-sent events; pings keep proxies from closing idle streams, and a client that
  // hears nothing for 40 s reconnects (with its last event id).
  sse: {
    ping: { enabled: true, intervalMs: 15_000 },
    client: { reconnectAfterInactivityMs: 40_000 },
  },
  // Clients get a stable shape: tRPC code, HTTP status, Studio code, procedure path and request id. Never a
  // stack or a cause (they can hold host paths, SQL, runtime details): those go to the server log only.
  errorFormatter({ shape, error, ctx }) {
    const mapped = error.cause instanceof MappedCause ? error.cause.mapped : mapError(error);
    return {
      code: shape.code,
      message: mapped.message,
      data: {
        code: shape.data.code,
        httpStatus: shape.data.httpStatus,
        studioCode: mapped.studioCode,
        path: shape.data.path ?? null,
        requestId: ctx?.requestId ?? null,
      },
    };
  },
});

export const router = t.router;
export const mergeRouters = t.mergeRouters;

// Every procedure's failures go through the one mapping in errors.ts; hidden ones are logged with their cause.
const mapErrors = t.middleware(async ({ ctx, next, path }) => {
  const result = await next();
  if (result.ok) return result;
  const error = toTRPCError(result.error);
  const cause = error.cause as MappedCause;
  if (cause.mapped.hidden) {
    const original = cause.original;
    ctx.deps.logger.error('procedure failed', {
      requestId: ctx.requestId,
      path,
      studioCode: cause.mapped.studioCode,
      error: original,
      cause: original instanceof Error ? original.cause : undefined,
    });
  }
  throw error;
});

// Calls that act on work already running: they go on while the server drains, so running execs can finish.
const DRAIN_ALLOWS = new Set(['exec.write', 'exec.closeStdin', 'exec.cancel', 'exec.stream']);
// Subscriptions that are running work (a started exec's output): they end with the drain, not when it starts.
const WORK_STREAMS = new Set(['exec.stream']);

// Graceful shutdown (issue 17): while draining, new mutations and subscriptions are refused with a retryable
// UNAVAILABLE (queries still answer); in-flight calls and work streams are counted so the drain can wait for
// them; every open subscription ends with the going-away signal, which tRPC's SSE link retries.
const drainGate = t.middleware(async ({ ctx, next, path, type }) => {
  const drain = ctx.deps.drain;
  if (drain.draining && type !== 'query' && !DRAIN_ALLOWS.has(path)) throw goingAway('call');
  const work = type !== 'subscription' || WORK_STREAMS.has(path);
  const done = work ? drain.track() : () => undefined;
  let result: Awaited<ReturnType<typeof next>>;
  try {
    result = await next();
  } catch (error) {
    done();
    throw error;
  }
  if (type !== 'subscription' || !result.ok) {
    done();
    return result;
  }
  const signal = work ? drain.allStreams : drain.idleStreams;
  const stream = untilGoingAway(result.data as AsyncIterable<unknown>, signal);
  async function* counted() {
    try {
      yield* stream;
    } catch (error) {
      throw toTRPCError(error);
    } finally {
      done();
    }
  }
  return { ...result, data: counted() };
});

// Denied-access audit rows are capped per address (20 a minute, the policy's limiter) so a flood of bad tokens
// cannot flood the store.
const deniedAudits = createRateLimiter({ limit: 20, windowMs: 60_000 });
const mayAuditDenied = (ip: string): boolean => deniedAudits.take(rateLimitKey('audit-denied', ip)).allowed;

/** Why a request could not have come from the IDE (its proof header, Origin, Sec-Fetch-Site), or null. */
export function ideRefusal(ctx: Pick<Context, 'req' | 'deps'>): string | null {
  const headers = ctx.req.headers;
  const host = headers.host;
  return cookieRequestRefusal({
    proof: headers[IDE_PROOF_HEADER],
    origin: headers.origin,
    secFetchSite: headers['sec-fetch-site'],
    ownOrigins: [...(host ? [`http://${host}`, `https://${host}`] : []), ...ctx.deps.origins],
  });
}

// No ambient authority (SECURITY.md §4b): a request that carries the login cookie, whatever its method and
// whichever procedure it names (public ones included), must prove it came from the IDE, or it is refused here,
// before any input is parsed or any procedure runs. Bearer callers (API clients, agents) are not cookie-borne.
const ideProof = t.middleware(async ({ ctx, next }) => {
  if (ctx.credential?.source === 'cookie') {
    const refusal = ideRefusal(ctx);
    if (refusal !== null) {
      if (mayAuditDenied(ctx.ip)) {
        await ctx.deps.store
          .audit({
            ...auditOf(ctx),
            action: 'auth.token',
            outcome: 'denied',
            details: { code: 'ORIGIN_REFUSED' },
          })
          .catch(() => undefined);
      }
      throw new AppError('ORIGIN_REFUSED', refusal);
    }
  }
  return next();
});

/** No credential needed (login, health of the API itself); a login cookie, if sent, still needs the IDE proof. */
export const publicProcedure = t.procedure.use(mapErrors).use(drainGate).use(ideProof);

/**
 * A signed-in caller (login JWT by bearer header or cookie, or an API token). A sign-in whose password someone
 * else chose gets PASSWORD_CHANGE_REQUIRED from everything but auth.me, auth.changePassword and auth.logout.
 */
export const authedProcedure = publicProcedure.use(async ({ ctx, next, path }) => {
  let principal: Principal;
  try {
    if (!ctx.credential) {
      throw new AppError(
        'UNAUTHENTICATED',
        'sign in first (auth.login) or send an API token as a bearer token',
      );
    }
    principal = await ctx.deps.auth.authenticate(ctx.credential.value);
  } catch (error) {
    if ((isCredentialError(error) || error instanceof AppError) && mayAuditDenied(ctx.ip)) {
      const code = mapError(error).studioCode;
      await ctx.deps.store
        .audit({ ...auditOf(ctx), action: 'auth.token', outcome: 'denied', details: { code } })
        .catch(() => undefined);
    }
    throw error;
  }
  if (!PASSWORD_CHANGE_ALLOWS.has(path)) assertPasswordSettled(principal);
  return next({ ctx: { ...ctx, principal } });
});

/** An administrator. Others get FORBIDDEN (audited). */
export const adminProcedure = authedProcedure.use(async ({ ctx, next, path }) => {
  if (ctx.principal?.role !== 'admin') {
    await ctx.deps.store
      .audit({ ...auditOf(ctx), action: 'admin.access', outcome: 'denied', target: path })
      .catch(() => undefined);
    throw new AppError('FORBIDDEN', `${path} is for administrators only`);
  }
  return next();
});

/**
 * A procedure that changes a session's workspace or processes: refused with HUMAN_HAS_CONTROL for API tokens
 * while a person holds control of the session (control.ts). The session is the input's `sessionId`, or for
 * `execId` inputs the session of that running exec.
 */
export const sessionMutationProcedure = authedProcedure.use(async ({ ctx, next, getRawInput }) => {
  if (ctx.principal.via === 'api-token') {
    const raw = (await getRawInput()) as { sessionId?: unknown; execId?: unknown } | null | undefined;
    let sessionId: string | undefined;
    if (typeof raw?.sessionId === 'string') sessionId = raw.sessionId;
    else if (typeof raw?.execId === 'string') {
      try {
        sessionId = ctx.deps.execs.get(ctx.principal.userId, raw.execId).sessionId;
      } catch {
        sessionId = undefined; // not the caller's exec: the procedure answers NOT_FOUND
      }
    }
    if (sessionId !== undefined) await assertMayMutate(ctx.deps.store, ctx.principal, sessionId);
  }
  return next();
});

/** The principal of an authed procedure (the middleware guarantees it). */
export function principalOf(ctx: Context): Principal {
  if (!ctx.principal) throw new AppError('UNAUTHENTICATED', 'sign in first');
  return ctx.principal;
}
