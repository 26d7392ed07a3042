import type { SessionRecord } from '@studio/db';
import {
  checkEgressTarget,
  type PolicySchemas,
  sessionByIdInput,
  sessionEgressCheckInput,
  sessionForkInput,
  sessionSetKeepAwakeInput,
  sessionSetNetworkInput,
} from '@studio/policy';
import { z } from 'zod';
import { auditOf, type Context } from '../core/context.ts';
import { AppError } from '../core/errors.ts';
import { authedProcedure, principalOf, router, sessionMutationProcedure } from '../core/trpc.ts';
import { actorOf } from '../realtime/event-bus.ts';

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
  /** The template's id (issue 19); null: the operator's image (`image`). */
  templateId: s.templateId ?? null,
  state: s.state,
  failureReason: s.failureReason,
  /** Why a `stopped` session stopped on its own (its sandbox died of a resource limit); null otherwise. */
  stopReason: (s as SessionRecord & { stopReason?: string }).stopReason ?? null,
  resources: s.resources,
  /** Network mode and allowlist: what the session's programs may reach through the egress proxy. */
  network: s.network,
  /** Names of the secrets the session is given (placeholders in its programs' environment; values never shown). */
  secrets: s.secrets,
  createdAt: s.createdAt.toISOString(),
  lastActiveAt: s.lastActiveAt.toISOString(),
  destroyedAt: s.destroyedAt?.toISOString() ?? null,
  /** A person holding control (API tokens' changes fail with HUMAN_HAS_CONTROL), or null. */
  control: s.control ? { heldBy: s.control.name, since: s.control.since.toISOString() } : null,
  /** The session this one was forked from (issue 20), or null. */
  parentId: s.parentId ?? null,
  /** The snapshot this session was made from, or null. */
  fromSnapshotId: s.fromSnapshotId ?? null,
  /** When a `paused` session was paused; null otherwise. */
  pausedAt: s.pausedAt?.toISOString() ?? null,
  /** Whether automatic pausing leaves the session running while idle. */
  keepAwake: s.keepAwake,
});

export type SessionView = ReturnType<typeof sessionView>;

/** Records who holds control of a session (null: nobody), audits it and tells the session's watchers. */
async function setControl(ctx: Context, sessionId: string, holder: { loginId: string; name: string } | null) {
  const principal = principalOf(ctx);
  const record = await ctx.deps.store.setSessionControl(principal.userId, sessionId, holder);
  if (!record) throw new AppError('NOT_FOUND', `session ${sessionId} not found; sessions.list shows yours`);
  await ctx.deps.store.audit({
    ...auditOf(ctx),
    action: holder ? 'session.control_take' : 'session.control_release',
    outcome: 'success',
    target: record.id,
  });
  ctx.deps.events.publish(record.id, actorOf(principal), {
    type: holder ? 'control.taken' : 'control.released',
  });
  return sessionView(record);
}

/** Sessions' procedures; `schemas` are the policy's, bound to the running limits. */
export const sessionsRouter = (schemas: PolicySchemas) =>
  router({
    /** Creates a session (a sandbox and its workspace) within the policy's limits; at most 5 live per user. */
    create: authedProcedure
      .input(schemas.sessionCreateInput)
      .mutation(async ({ ctx, input }) =>
        announced(ctx, await ctx.deps.sessions.create(ctx.principal.userId, input, auditOf(ctx))),
      ),

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

    /**
     * Pauses the session (issue 20): saved with its memory and running programs where the backend can (gVisor),
     * else its workspace only, and released, holding none of the host's memory. Terminals, streams and preview
     * connections end; any later use (exec, files, terminal, preview) resumes it. Idempotent.
     */
    pause: sessionMutationProcedure
      .input(sessionByIdInput)
      .mutation(async ({ ctx, input }) =>
        announced(ctx, await ctx.deps.sessions.pause(ctx.principal.userId, input.sessionId, auditOf(ctx))),
      ),

    /**
     * Resumes a paused session: programs carry on where they were when memory was saved, else start again.
     * RESTORE_FAILED leaves it stopped with its workspace intact (sessions.start then starts it afresh).
     */
    resume: authedProcedure
      .input(sessionByIdInput)
      .mutation(async ({ ctx, input }) =>
        announced(ctx, await ctx.deps.sessions.resume(ctx.principal.userId, input.sessionId, auditOf(ctx))),
      ),

    /**
     * Forks the session into `count` new sessions from this moment: each its own copy of the workspace and, where
     * the backend saves memory, of its running programs. The source pauses only for the capture. Forks are the
     * caller's, count against the live-session limit, and carry `parentId`; each is announced with its parent.
     */
    fork: authedProcedure.input(sessionForkInput).mutation(async ({ ctx, input }) => {
      const principal = principalOf(ctx);
      const forks = await ctx.deps.sessions.fork(
        principal.userId,
        input.sessionId,
        input.count,
        auditOf(ctx),
      );
      for (const f of forks) {
        ctx.deps.events.publish(input.sessionId, actorOf(principal), {
          type: 'session.forked',
          forkId: f.id,
        });
      }
      return forks.map((f) => announced(ctx, f));
    }),

    /** Whether automatic pausing leaves the session running while idle (a long job that needs no one). */
    setKeepAwake: sessionMutationProcedure
      .input(sessionSetKeepAwakeInput)
      .mutation(async ({ ctx, input }) =>
        sessionView(
          await ctx.deps.sessions.setKeepAwake(
            ctx.principal.userId,
            input.sessionId,
            input.keepAwake,
            auditOf(ctx),
          ),
        ),
      ),

    /** Removes the sandbox and its workspace for good. Idempotent. */
    destroy: authedProcedure
      .input(sessionByIdInput)
      .mutation(async ({ ctx, input }) =>
        announced(ctx, await ctx.deps.sessions.destroy(ctx.principal.userId, input.sessionId, auditOf(ctx))),
      ),

    /**
     * A person takes control of the session: until released, API tokens (agents, API clients) get
     * HUMAN_HAS_CONTROL (409) on every change (files, exec, terminal); reads stay allowed. Logins only (an API
     * token gets FORBIDDEN). Taking it again moves it to the caller's login. Publishes `control.taken`.
     */
    takeControl: authedProcedure.input(sessionByIdInput).mutation(async ({ ctx, input }) => {
      const principal = principalOf(ctx);
      await ctx.deps.sessions.get(principal.userId, input.sessionId, auditOf(ctx));
      if (principal.via !== 'login' || !principal.loginId) {
        throw new AppError(
          'FORBIDDEN',
          'only a person signed in (auth.login: the web app) can take control of a session; API tokens cannot',
        );
      }
      return setControl(ctx, input.sessionId, { loginId: principal.loginId, name: principal.username });
    }),

    /**
     * Releases control (the holder, or any login of the owner; idempotent). Publishes `control.released` when
     * control was held. API tokens get FORBIDDEN.
     */
    releaseControl: authedProcedure.input(sessionByIdInput).mutation(async ({ ctx, input }) => {
      const principal = principalOf(ctx);
      const before = await ctx.deps.sessions.get(principal.userId, input.sessionId, auditOf(ctx));
      if (principal.via !== 'login') {
        throw new AppError(
          'FORBIDDEN',
          'only a person signed in (auth.login: the web app) can release control of a session',
        );
      }
      if (!before.control) return sessionView(before);
      return setControl(ctx, input.sessionId, null);
    }),

    /**
     * Replaces the session's network settings (mode and allowlist), audited and announced as `network.changed`.
     * Takes effect at once, also for programs already running (their open connections through the proxy end).
     * `open` only where the operator permits it (EGRESS_DENIED otherwise).
     */
    setNetwork: sessionMutationProcedure.input(sessionSetNetworkInput).mutation(async ({ ctx, input }) => {
      const principal = principalOf(ctx);
      const record = await ctx.deps.sessions.setNetwork(
        principal.userId,
        input.sessionId,
        input.network,
        auditOf(ctx),
      );
      ctx.deps.events.publish(record.id, actorOf(principal), {
        type: 'network.changed',
        mode: record.network.mode,
        allow: record.network.allow,
      });
      return sessionView(record);
    }),

    /**
     * Whether the session's programs may reach `host:port` by its settings (before any resolution): `{ allowed:
     * true }`, or EGRESS_DENIED naming the host and the fix. What an agent asks before it relies on the network.
     */
    checkEgress: authedProcedure.input(sessionEgressCheckInput).query(async ({ ctx, input }) => {
      const record = await ctx.deps.sessions.get(ctx.principal.userId, input.sessionId, auditOf(ctx));
      const decision = checkEgressTarget(record.network, input.host, input.port, {
        allowOpen: ctx.deps.policy.egress.allowOpen,
      });
      if (!decision.allowed) throw new AppError('EGRESS_DENIED', `${decision.message} (${decision.reason})`);
      return { allowed: true as const, host: decision.host.value, port: decision.port };
    }),

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
