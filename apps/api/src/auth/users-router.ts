import type { UserRecord } from '@studio/db';
import { userCreateInput, userIdSchema } from '@studio/policy';
import { z } from 'zod';
import { auditOf } from '../core/context.ts';
import { AppError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { adminProcedure, router } from '../core/trpc.ts';
import { hashPassword } from './auth.ts';

const view = (u: UserRecord) => ({
  id: u.id,
  username: u.username,
  role: u.role,
  disabled: u.disabledAt !== null,
  createdAt: u.createdAt.toISOString(),
});

export const usersRouter = router({
  /** Creates a user (role `user`; there is no role input on purpose). Admins only. */
  create: adminProcedure.input(userCreateInput).mutation(async ({ ctx, input }) => {
    const user = await ctx.deps.store.createUser({
      id: newId('usr_'),
      username: input.username,
      passwordHash: await hashPassword(input.password),
      role: 'user',
    });
    await ctx.deps.store.audit({
      ...auditOf(ctx),
      action: 'user.create',
      outcome: 'success',
      target: user.id,
    });
    return view(user);
  }),

  /** Every user. Admins only. */
  list: adminProcedure.query(async ({ ctx }) => (await ctx.deps.store.listUsers()).map(view)),

  /** Disables a user: revokes all its sign-ins and API tokens and stops its sessions. Admins only; not yourself. */
  disable: adminProcedure.input(z.strictObject({ userId: userIdSchema })).mutation(async ({ ctx, input }) => {
    if (input.userId === ctx.principal.userId) {
      throw new AppError('INVALID_STATE', 'you cannot disable your own account; ask another administrator');
    }
    const user = await ctx.deps.store.disableUser(input.userId);
    if (!user) throw new AppError('NOT_FOUND', `user ${input.userId} not found`);
    ctx.deps.auth.forgetUser(user.id);
    await ctx.deps.sessions.stopAllOf(user.id, auditOf(ctx));
    await ctx.deps.store.audit({
      ...auditOf(ctx),
      action: 'user.disable',
      outcome: 'success',
      target: user.id,
    });
    return view(user);
  }),
});
