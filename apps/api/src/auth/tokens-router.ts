import type { ApiTokenRecord } from '@studio/db';
import { tokenCreateInput } from '@studio/policy';
import { z } from 'zod';
import { auditOf } from '../core/context.ts';
import { AppError } from '../core/errors.ts';
import { hashApiToken, newApiToken, newId } from '../core/ids.ts';
import { authedProcedure, router } from '../core/trpc.ts';

const DAY = 24 * 60 * 60 * 1000;

/** `agent: true` marks a token made for an AI agent: events it causes name the actor kind `agent`. */
const createInput = tokenCreateInput.extend({ agent: z.boolean().optional() });

const view = (t: ApiTokenRecord) => ({
  id: t.id,
  name: t.name,
  agent: t.agent,
  createdAt: t.createdAt.toISOString(),
  expiresAt: t.expiresAt?.toISOString() ?? null,
  lastUsedAt: t.lastUsedAt?.toISOString() ?? null,
  revokedAt: t.revokedAt?.toISOString() ?? null,
});

export const tokensRouter = router({
  /** Creates an API token for the caller. The secret is in this response only; the server keeps its hash. */
  create: authedProcedure.input(createInput).mutation(async ({ ctx, input }) => {
    const secret = newApiToken();
    const record = await ctx.deps.store.createApiToken({
      id: newId('tok_'),
      userId: ctx.principal.userId,
      name: input.name,
      tokenHash: hashApiToken(secret),
      agent: input.agent === true,
      expiresAt: input.expiresInDays === undefined ? null : new Date(Date.now() + input.expiresInDays * DAY),
    });
    await ctx.deps.store.audit({
      ...auditOf(ctx),
      action: 'token.create',
      outcome: 'success',
      target: record.id,
    });
    return { ...view(record), token: secret };
  }),

  /** The caller's API tokens (never their secrets). */
  list: authedProcedure.query(async ({ ctx }) =>
    (await ctx.deps.store.listApiTokens(ctx.principal.userId)).map(view),
  ),

  /** Revokes one of the caller's API tokens; it stops working at once. */
  revoke: authedProcedure
    .input(
      z.strictObject({ id: z.string().regex(/^tok_[A-Za-z0-9_-]{16,64}$/, { error: 'not a token id' }) }),
    )
    .mutation(async ({ ctx, input }) => {
      const revoked = await ctx.deps.store.revokeApiToken(ctx.principal.userId, input.id);
      if (!revoked) throw new AppError('NOT_FOUND', `API token ${input.id} not found (or already revoked)`);
      ctx.deps.auth.forgetApiToken(input.id);
      await ctx.deps.store.audit({
        ...auditOf(ctx),
        action: 'token.revoke',
        outcome: 'success',
        target: input.id,
      });
      return { ok: true as const };
    }),
});
