import { changePasswordInput, loginInput } from '@studio/policy';
import { auditOf } from '../core/context.ts';
import { AppError, mapError } from '../core/errors.ts';
import { authedProcedure, ideRefusal, publicProcedure, router } from '../core/trpc.ts';
import { setAuthCookie } from './cookies.ts';

export const authRouter = router({
  /**
   * Signs in with a username and password (rate-limited per username and client address). Returns a JWT as
   * `token` for bearer use. Only when the request carries the IDE's proof (SECURITY.md §4b) is it also set as the
   * login cookie (httpOnly, SameSite=Strict, host-only, `__Host-` where accepted): a form another site posts here
   * cannot sign the victim's browser in as someone else.
   */
  login: publicProcedure.input(loginInput).mutation(async ({ ctx, input }) => {
    try {
      const { token, expiresAt, user } = await ctx.deps.auth.login(input.username, input.password, ctx.ip);
      if (ideRefusal(ctx) === null) setAuthCookie(ctx, token, (expiresAt.getTime() - Date.now()) / 1000);
      await ctx.deps.store.audit({
        ...auditOf(ctx),
        actorId: user.id,
        action: 'auth.login',
        outcome: 'success',
        target: user.username,
      });
      return {
        token,
        expiresAt: expiresAt.toISOString(),
        user: {
          id: user.id,
          username: user.username,
          role: user.role,
          mustChangePassword: user.mustChangePassword,
        },
      };
    } catch (error) {
      const code = mapError(error).studioCode;
      if (code === 'INVALID_CREDENTIALS' || code === 'RATE_LIMITED') {
        await ctx.deps.store
          .audit({
            ...auditOf(ctx),
            action: 'auth.login',
            outcome: 'failure',
            target: input.username,
            details: { code },
          })
          .catch(() => undefined);
      }
      throw error;
    }
  }),

  /** Ends this sign-in: the JWT is revoked server-side and the cookie cleared. */
  logout: authedProcedure.mutation(async ({ ctx }) => {
    if (ctx.principal.via !== 'login') {
      throw new AppError('INVALID_STATE', 'logout ends a sign-in; revoke an API token with tokens.revoke');
    }
    await ctx.deps.auth.logout(ctx.principal);
    setAuthCookie(ctx, null, 0);
    await ctx.deps.store.audit({ ...auditOf(ctx), action: 'auth.logout', outcome: 'success' });
    return { ok: true as const };
  }),

  /**
   * A 60 s token for the same sign-in, for the first message of the terminal WebSocket (the page cannot read
   * its httpOnly cookie). Only for sign-ins: API clients send their API token.
   */
  socketToken: authedProcedure.mutation(async ({ ctx }) => {
    const { token, expiresAt } = await ctx.deps.auth.socketToken(ctx.principal);
    return { token, expiresAt: expiresAt.toISOString() };
  }),

  /**
   * Changes the signed-in user's password (not for API tokens): the current one is checked under the login's
   * rate limits, the new one has the 12-character floor; the user's other sign-ins are revoked (this one stays),
   * API tokens are kept, and a must-change flag is cleared. Audited as `user.password_change`, failures included.
   */
  changePassword: authedProcedure.input(changePasswordInput).mutation(async ({ ctx, input }) => {
    try {
      await ctx.deps.auth.changePassword(ctx.principal, input.currentPassword, input.newPassword, ctx.ip);
    } catch (error) {
      const code = mapError(error).studioCode;
      await ctx.deps.store
        .audit({
          ...auditOf(ctx),
          action: 'user.password_change',
          outcome: 'failure',
          target: ctx.principal.userId,
          details: { code },
        })
        .catch(() => undefined);
      throw error;
    }
    await ctx.deps.store.audit({
      ...auditOf(ctx),
      action: 'user.password_change',
      outcome: 'success',
      target: ctx.principal.userId,
    });
    return { ok: true as const };
  }),

  /**
   * The caller. `mustChangePassword`: the password was set by someone else; until auth.changePassword, a
   * sign-in gets PASSWORD_CHANGE_REQUIRED from everything but this, auth.changePassword and auth.logout.
   */
  me: authedProcedure.query(({ ctx }) => ({
    id: ctx.principal.userId,
    username: ctx.principal.username,
    role: ctx.principal.role,
    via: ctx.principal.via,
    mustChangePassword: ctx.principal.mustChangePassword === true,
  })),
});
