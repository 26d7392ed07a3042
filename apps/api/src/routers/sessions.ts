import { type PolicySchemas, sessionByIdInput } from '@studio/policy';
import { z } from 'zod';
import { auditOf, type Context } from '../context.ts';
import { actorOf } from '../event-bus.ts';
import type { SessionRecord } from '../store/store.ts';
import { authedProcedure, passThrough, principalOf, router } from '../trpc.ts';

/** Publishes the session's state to its watchers and returns the client view. */
function announced(ctx: Context, s: SessionRecord) {
  ctx.deps.events.publish(s.id, actorOf(principalOf(ctx)), { type: 'session.status', state: s.state });
  if (s.state === 'destroyed') ctx.deps.events.drop(s.id);
  return sessionView(s);
}

/** What clients see of a session (no sandbox ids or instance ids). */
export const sessionView = (s: SessionRecord) => ({
  id: s.id,
  backend: s.backend,
  image: s.image,
  state: s.state,
  failureReason: s.failureReason,
  resources: s.resources,
  createdAt: s.createdAt.toISOString(),
  lastActiveAt: s.lastActiveAt.toISOString(),
  destroyedAt: s.destroyedAt?.toISOString() ?? null,
});

export type SessionView = ReturnType<typeof sessionView>;

export const sessionsRouter = router({
  /** Creates a session (a sandbox and its workspace) within the policy's limits; at most 5 live per user. */
  create: authedProcedure
    .input(passThrough<PolicySchemas['sessionCreateInput']>)
    .mutation(async ({ ctx, input }) => {
      const parsed = ctx.deps.schemas.sessionCreateInput.parse(input);
      return announced(ctx, await ctx.deps.sessions.create(ctx.principal.userId, parsed, auditOf(ctx)));
    }),

  /** The caller's live sessions, or all of them (newest first, at most 500) with `includeEnded`. */
  list: authedProcedure
    .input(z.strictObject({ includeEnded: z.boolean().optional() }).optional())
    .query(async ({ ctx, input }) =>
      (await ctx.deps.sessions.list(ctx.principal.userId, input?.includeEnded ?? false)).map(sessionView),
    ),

  get: authedProcedure
    .input(sessionByIdInput)
    .query(async ({ ctx, input }) =>
      sessionView(await ctx.deps.sessions.get(ctx.principal.userId, input.sessionId, auditOf(ctx))),
    ),

  /** Stops every process; the workspace is kept. */
  stop: authedProcedure
    .input(sessionByIdInput)
    .mutation(async ({ ctx, input }) =>
      announced(ctx, await ctx.deps.sessions.stop(ctx.principal.userId, input.sessionId, auditOf(ctx))),
    ),

  start: authedProcedure
    .input(sessionByIdInput)
    .mutation(async ({ ctx, input }) =>
      announced(ctx, await ctx.deps.sessions.start(ctx.principal.userId, input.sessionId, auditOf(ctx))),
    ),

  /** Removes the sandbox and its workspace for good. Idempotent. */
  destroy: authedProcedure
    .input(sessionByIdInput)
    .mutation(async ({ ctx, input }) =>
      announced(ctx, await ctx.deps.sessions.destroy(ctx.principal.userId, input.sessionId, auditOf(ctx))),
    ),

  /** Resource use of a running session (`stats: null` when it is not running). */
  stats: authedProcedure.input(sessionByIdInput).query(async ({ ctx, input }) => {
    const { session, stats } = await ctx.deps.sessions.stats(
      ctx.principal.userId,
      input.sessionId,
      auditOf(ctx),
    );
    return { session: sessionView(session), stats };
  }),
});
