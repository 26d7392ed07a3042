import { cursorSchema, eventsHistoryInput, eventsSubscribeInput, sessionByIdInput } from '@studio/policy';
import { tracked } from '@trpc/server';
import { auditOf } from '../core/context.ts';
import { toTRPCError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { authedProcedure, router } from '../core/trpc.ts';
import { actorOf } from './event-bus.ts';

// tRPC's SSE transport reconnects with the last tracked id as `lastEventId`; it means the same as `cursor`.
const subscribeInput = eventsSubscribeInput.extend({ lastEventId: cursorSchema.nullish() });

export const eventsRouter = router({
  /** Who is connected to your session now: events subscribers and terminals, each with its actor. */
  watchers: authedProcedure.input(sessionByIdInput).query(async ({ ctx, input }) => {
    await ctx.deps.sessions.get(ctx.principal.userId, input.sessionId, auditOf(ctx));
    return ctx.deps.events.watchers(input.sessionId);
  }),

  /**
   * A page of a session's past events (your sessions only; another user's is NOT_FOUND), as `subscribe` sent them
   * (each with its actor), oldest first: the newest `limit` (1..200, default 100), or those before `before` (a
   * page's `nextBefore`, null once the oldest kept is reached). The store keeps each session's newest 2000, not
   * who watched (watcher.joined/left). To continue live with nothing lost or repeated, subscribe with `cursor`
   * from the newest page.
   */
  history: authedProcedure.input(eventsHistoryInput).query(async ({ ctx, input }) => {
    const { userId } = ctx.principal;
    await ctx.deps.sessions.get(userId, input.sessionId, auditOf(ctx));
    const events = ctx.deps.events;
    // Taken before the page is read: anything published after it reaches the subscriber from the bus.
    const head = events.head(input.sessionId);
    if (!events.history) return { events: [], nextBefore: null, cursor: head };
    return events.history.page(userId, input.sessionId, {
      before: input.before,
      limit: input.limit,
      head,
    });
  }),

  /**
   * A session's live events (your sessions only; another user's is NOT_FOUND): file changes made through the
   * API (with their actor) and inside the sandbox (`op: 'changed'`, no actor), exec start/output/exit, session status, watchers joining and leaving, each with its actor. Each event's
   * `id` is a cursor: subscribe again with `cursor` (or let the SSE link send `lastEventId`) to get what you
   * missed while it is still among the last 1000 events; older ones become one `{ type: 'gap' }` event.
   */
  subscribe: authedProcedure.input(subscribeInput).subscription(async function* ({ ctx, input, signal }) {
    const { userId } = ctx.principal;
    // Errors inside a subscription skip the procedure middleware: map them here (else they reach the client
    // as INTERNAL, which its SSE link retries forever).
    await ctx.deps.sessions.get(userId, input.sessionId, auditOf(ctx)).catch((error: unknown) => {
      throw toTRPCError(error);
    });
    const actor = actorOf(ctx.principal);
    const watcherId = newId('wat_');
    const events = ctx.deps.events;
    const stop = signal ?? new AbortController().signal;
    const cursor = input.lastEventId ?? input.cursor;
    const stream = events.subscribe(input.sessionId, cursor, stop);
    events.publish(input.sessionId, actor, { type: 'watcher.joined', watcherId, via: 'events' });
    // Changes made inside the sandbox are watched while someone listens.
    const release = ctx.deps.fileWatches.acquire(userId, input.sessionId);
    try {
      for await (const event of stream) yield tracked(event.id, event);
    } finally {
      release();
      events.publish(input.sessionId, actor, { type: 'watcher.left', watcherId, via: 'events' });
    }
  }),
});
