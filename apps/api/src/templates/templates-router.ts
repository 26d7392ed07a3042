import {
  DEFAULT_TEMPLATE_NAME,
  templateBuildInput,
  templateByRefInput,
  templateCreateInput,
} from '@studio/policy';
import { auditOf } from '../core/context.ts';
import { toTRPCError } from '../core/errors.ts';
import { authedProcedure, router } from '../core/trpc.ts';
import type { BuildLogItem } from './build-log.ts';

/**
 * Templates (issue 19): images users build from a recipe (a base, Debian, npm and pip packages, files, commands)
 * or a Dockerfile, isolated and cached by content, then name in `sessions.create({ template })`. Builds run in the
 * background: `create` and `build` return at once (state `building`), `logs` streams the build's output live,
 * `get` tells the outcome. Yours and the shared ones (an admin's) are listed; others' are NOT_FOUND.
 */
export const templatesRouter = router({
  /** The templates you can use: yours and shared ones. */
  list: authedProcedure.query(async ({ ctx }) => {
    const { userId } = ctx.principal;
    const own = (await ctx.deps.templates.list(userId)).map((t) => ctx.deps.templates.view(t, userId));
    return [ctx.deps.templates.operatorView(), ...own];
  }),

  /** One template by id or name, with its spec, its state and its latest build's log. */
  get: authedProcedure.input(templateByRefInput).query(async ({ ctx, input }) => {
    const { userId } = ctx.principal;
    if (input.template === DEFAULT_TEMPLATE_NAME) return { ...ctx.deps.templates.operatorView(), log: '' };
    const t = await ctx.deps.templates.find(userId, input.template);
    const running = ctx.deps.templates.follow(t.id);
    return { ...ctx.deps.templates.view(t, userId), log: running ? running.text() : t.log };
  }),

  /** Creates a template and starts its build; returns at once (follow `logs`, or poll `get`). */
  create: authedProcedure.input(templateCreateInput).mutation(async ({ ctx, input }) => {
    const { userId, role } = ctx.principal;
    const t = await ctx.deps.templates.create({ userId, role }, input);
    await ctx.deps.store.audit({
      ...auditOf(ctx),
      action: 'template.create',
      outcome: 'success',
      target: t.id,
      details: { name: t.name, shared: t.shared },
    });
    return ctx.deps.templates.view(t, userId);
  }),

  /**
   * Builds a template again, with a new `spec` when given (its name and id stay; sessions keep using the last good
   * build until the new one is ready). An unchanged one finishes in well under a second (its build is reused).
   */
  build: authedProcedure.input(templateBuildInput).mutation(async ({ ctx, input }) => {
    const { userId, role } = ctx.principal;
    const t = await ctx.deps.templates.build({ userId, role }, input.template, input.spec);
    await ctx.deps.store.audit({
      ...auditOf(ctx),
      action: 'template.build',
      outcome: 'success',
      target: t.id,
    });
    return ctx.deps.templates.view(t, userId);
  }),

  /** Deletes a template (refused while a live session runs it); its image goes when nothing else uses it. */
  delete: authedProcedure.input(templateByRefInput).mutation(async ({ ctx, input }) => {
    const { userId, role } = ctx.principal;
    const t = await ctx.deps.templates.delete({ userId, role }, input.template);
    await ctx.deps.store.audit({
      ...auditOf(ctx),
      action: 'template.delete',
      outcome: 'success',
      target: t.id,
    });
    return { id: t.id, deleted: true as const };
  }),

  /**
   * A template's build log, live (SSE): what was logged so far, each new chunk, then `{ type: 'end', state,
   * failure }`. When no build runs, the latest build's log and its outcome at once.
   */
  logs: authedProcedure.input(templateByRefInput).subscription(async function* ({ ctx, input, signal }) {
    const { userId } = ctx.principal;
    if (input.template === DEFAULT_TEMPLATE_NAME) {
      yield { type: 'end', state: 'ready', failure: null } satisfies BuildLogItem;
      return;
    }
    // Errors inside a subscription skip the procedure middleware: map them here.
    const t = await ctx.deps.templates.find(userId, input.template).catch((error: unknown) => {
      throw toTRPCError(error);
    });
    const running = ctx.deps.templates.follow(t.id);
    if (!running && t.state === 'building') {
      // Built on another node of a cluster (or just ending here): its log as the builder stores it.
      yield* ctx.deps.templates.followStored(t.id, signal ?? new AbortController().signal);
      return;
    }
    if (!running) {
      if (t.log !== '') yield { type: 'log', text: t.log } satisfies BuildLogItem;
      yield {
        type: 'end',
        state: t.state === 'failed' ? 'failed' : 'ready',
        failure: t.failure,
      } satisfies BuildLogItem;
      return;
    }
    yield* running.follow(signal ?? new AbortController().signal);
  }),
});
