import { isStoreError, type SecretRecord } from '@studio/db';
import { MAX_SECRETS, secretCreateInput, secretDeleteInput, secretRotateInput } from '@studio/policy';
import { auditOf } from '../core/context.ts';
import { AppError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { authedProcedure, router } from '../core/trpc.ts';

/**
 * Creating, rotating and deleting secrets is for people: an agent's token may list them (to know what it can ask
 * a session to be given) but not change them, so an agent in a session can neither swap a person's credential for
 * one of its own nor delete it.
 */
const personProcedure = authedProcedure.use(({ ctx, next }) => {
  if (ctx.principal?.agent === true) {
    throw new AppError(
      'FORBIDDEN',
      "secrets are managed by people: a person adds, rotates and deletes them on the IDE's Secrets page or with a token not made for an agent",
    );
  }
  return next();
});

/** What the API shows of a secret: everything but its value, which is never returned after it is stored. */
const view = (s: SecretRecord) => ({
  name: s.name,
  hosts: s.hosts,
  header: s.header,
  createdAt: s.createdAt.toISOString(),
  updatedAt: s.updatedAt.toISOString(),
});

/**
 * The caller's secrets (issue 18): write-only values that sessions use through the egress proxy without holding
 * them. A value goes in with `create` or `rotate` and never comes out of the API again (not in a response, a log,
 * an event, an audit record or an error); it is stored sealed under the operator's key.
 */
export const secretsRouter = router({
  /** The caller's secrets: names, hosts and header templates, never values. */
  list: authedProcedure.query(async ({ ctx }) =>
    (await ctx.deps.store.listSecrets(ctx.principal.userId)).map(view),
  ),

  /** Stores a new secret. CONFLICT when the name is taken (rotate it instead). */
  create: personProcedure.input(secretCreateInput).mutation(async ({ ctx, input }) => {
    const ownerId = ctx.principal.userId;
    const record = await ctx.deps.store
      .createSecret(
        {
          id: newId('sec_'),
          ownerId,
          name: input.name,
          hosts: input.hosts,
          header: input.header,
          sealed: ctx.deps.vault.seal(ownerId, input.name, input.value),
        },
        MAX_SECRETS,
      )
      .catch((error: unknown) => {
        // The store's count-and-insert refuses past the limit; its message names the limit and the fix.
        if (isStoreError(error, 'INVALID_INPUT')) throw new AppError('LIMIT_EXCEEDED', error.message);
        throw error;
      });
    await ctx.deps.store.audit({
      ...auditOf(ctx),
      action: 'secret.create',
      outcome: 'success',
      target: record.id,
      details: { name: record.name, hosts: record.hosts },
    });
    return view(record);
  }),

  /** A new value for a stored secret; sessions given it use the new value from their next connection. */
  rotate: personProcedure.input(secretRotateInput).mutation(async ({ ctx, input }) => {
    const ownerId = ctx.principal.userId;
    const record = await ctx.deps.store.rotateSecret(
      ownerId,
      input.name,
      ctx.deps.vault.seal(ownerId, input.name, input.value),
    );
    if (!record) {
      throw new AppError(
        'NOT_FOUND',
        `you have no secret named ${input.name}; create it with secrets.create`,
      );
    }
    await ctx.deps.store.audit({
      ...auditOf(ctx),
      action: 'secret.rotate',
      outcome: 'success',
      target: record.id,
      details: { name: record.name },
    });
    return view(record);
  }),

  /** Deletes a secret. Sessions given it keep its placeholder, which then goes out unchanged. */
  delete: personProcedure.input(secretDeleteInput).mutation(async ({ ctx, input }) => {
    const deleted = await ctx.deps.store.deleteSecret(ctx.principal.userId, input.name);
    if (!deleted) throw new AppError('NOT_FOUND', `you have no secret named ${input.name}`);
    await ctx.deps.store.audit({
      ...auditOf(ctx),
      action: 'secret.delete',
      outcome: 'success',
      target: null,
      details: { name: input.name },
    });
    return { ok: true as const };
  }),
});
