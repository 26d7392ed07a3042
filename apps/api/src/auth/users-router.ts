import type { UserRecord } from '@studio/db';
import { userCreateInput, userPasswordResetInput, userRefInput, userSetRoleInput } from '@studio/policy';
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
  mustChangePassword: u.mustChangePassword,
  createdAt: u.createdAt.toISOString(),
});

function notYourself(userId: string, ownId: string, what: string): void {
  if (userId === ownId) {
    throw new AppError('INVALID_STATE', `you cannot ${what} your own account; ask another administrator`);
  }
}

function found(user: UserRecord | undefined, userId: string): UserRecord {
  if (!user) throw new AppError('NOT_FOUND', `user ${userId} not found; list users with users.list`);
  return user;
}

export const usersRouter = router({
  /** Creates a user (role `user`; there is no role input on purpose: see users.setRole). Admins only. */
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
  disable: adminProcedure.input(userRefInput).mutation(async ({ ctx, input }) => {
    notYourself(input.userId, ctx.principal.userId, 'disable');
    const user = found(await ctx.deps.store.disableUser(input.userId), input.userId);
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

  /**
   * Enables a disabled user: it can sign in again. What disabling revoked (sign-ins, API tokens) stays revoked,
   * and its sessions stay stopped. Admins only.
   */
  enable: adminProcedure.input(userRefInput).mutation(async ({ ctx, input }) => {
    const user = found(await ctx.deps.store.enableUser(input.userId), input.userId);
    ctx.deps.auth.forgetUser(user.id);
    await ctx.deps.store.audit({
      ...auditOf(ctx),
      action: 'user.enable',
      outcome: 'success',
      target: user.id,
    });
    return view(user);
  }),

  /**
   * Sets a user's password (12-character floor) for one who lost theirs. The administrator knows it, so the user
   * must change it at the next sign-in (PASSWORD_CHANGE_REQUIRED until then), and every sign-in of the user is
   * revoked; API tokens are kept (disable the user to cut those too). Admins only; not yourself
   * (auth.changePassword).
   */
  resetPassword: adminProcedure.input(userPasswordResetInput).mutation(async ({ ctx, input }) => {
    if (input.userId === ctx.principal.userId) {
      throw new AppError(
        'INVALID_STATE',
        'change your own password with auth.changePassword (Account in the IDE)',
      );
    }
    const user = found(
      await ctx.deps.store.setPassword(input.userId, {
        passwordHash: await hashPassword(input.password),
        mustChangePassword: true,
      }),
      input.userId,
    );
    ctx.deps.auth.forgetUser(user.id);
    await ctx.deps.store.audit({
      ...auditOf(ctx),
      action: 'user.password_reset',
      outcome: 'success',
      target: user.id,
    });
    return view(user);
  }),

  /**
   * Makes a user an administrator or takes it back. Admins only; not yourself, so the last administrator cannot
   * remove the role from the instance by mistake. Takes effect on the user's next request.
   */
  setRole: adminProcedure.input(userSetRoleInput).mutation(async ({ ctx, input }) => {
    notYourself(input.userId, ctx.principal.userId, 'change the role of');
    const user = found(await ctx.deps.store.setUserRole(input.userId, input.role), input.userId);
    ctx.deps.auth.forgetUser(user.id);
    await ctx.deps.store.audit({
      ...auditOf(ctx),
      action: 'user.role_change',
      outcome: 'success',
      target: user.id,
      details: { role: input.role },
    });
    return view(user);
  }),
});
