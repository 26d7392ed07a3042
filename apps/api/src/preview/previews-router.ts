import { previewRequestInput } from '@studio/policy';
import { z } from 'zod';
import { auditOf } from '../core/context.ts';
import { AppError } from '../core/errors.ts';
import { authedProcedure, router } from '../core/trpc.ts';

const previewCreateInput = previewRequestInput.pick({ sessionId: true, port: true });

export const previewsRouter = router({
  /**
   * A link to a port of your running session through the preview proxy (its own origin): valid 1 h, for that
   * session and port only. Ports 3000-9999, never 22/25/80/443/3306/5432/6379/27017 (PORT_BLOCKED).
   */
  create: authedProcedure
    .input(previewCreateInput)
    .output(z.object({ url: z.string(), expiresAt: z.string() }))
    .mutation(async ({ ctx, input }) => {
      if (ctx.deps.previews.baseUrl === null) {
        throw new AppError('INVALID_STATE', 'previews are off on this server; set STUDIO_PREVIEW_PORT');
      }
      await ctx.deps.sessions.withSandbox(
        ctx.principal.userId,
        input.sessionId,
        auditOf(ctx),
        async () => {},
      );
      const grant = ctx.deps.previews.create(ctx.principal.userId, input.sessionId, input.port);
      const url = ctx.deps.previews.linkFor({
        sessionId: input.sessionId,
        port: input.port,
        token: grant.token,
      });
      if (url === null)
        throw new AppError('INVALID_STATE', 'previews are off on this server; set STUDIO_PREVIEW_PORT');
      return { url, expiresAt: grant.expiresAt.toISOString() };
    }),
});
