import { createRateLimiter, rateLimitKey } from '@studio/policy';
import { initTRPC } from '@trpc/server';
import { isCredentialError, type Principal } from '../auth/auth.ts';
import { assertMayMutate } from '../sessions/control.ts';
import { auditOf, type Context } from './context.ts';
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

/** No credential needed (login, health of the API itself). */
export const publicProcedure = t.procedure.use(mapErrors);

// Denied-access audit rows are capped per address (20 a minute, the policy's limiter) so a flood of bad tokens
// cannot flood the store.
const deniedAudits = createRateLimiter({ limit: 20, windowMs: 60_000 });
const mayAuditDenied = (ip: string): boolean => deniedAudits.take(rateLimitKey('audit-denied', ip)).allowed;

function originAllowed(ctx: Context): boolean {
  const origin = ctx.req.headers.origin;
  if (origin === undefined) return true;
  const host = ctx.req.headers.host;
  const own = host ? [`http://${host}`, `https://${host}`] : [];
  return own.includes(origin) || ctx.deps.origins.includes(origin);
}

/** A signed-in caller (login JWT by bearer header or cookie, or an API token). */
export const authedProcedure = publicProcedure.use(async ({ ctx, next }) => {
  let principal: Principal;
  try {
    if (!ctx.credential) {
      throw new AppError(
        'UNAUTHENTICATED',
        'sign in first (auth.login) or send an API token as a bearer token',
      );
    }
    // Cookies ride along on cross-site requests; SameSite=Strict stops that in browsers, this stops the rest.
    if (ctx.credential.source === 'cookie' && !originAllowed(ctx)) {
      throw new AppError('ORIGIN_REFUSED', 'requests with the login cookie must come from the Studio origin');
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
