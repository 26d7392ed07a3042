import { previewRequestInput } from '@studio/policy';
import { z } from 'zod';
import { auditOf } from '../context.ts';
import { AppError } from '../errors.ts';
import { PREVIEW_AUTH_PATH } from '../preview.ts';
import { authedProcedure, router } from '../trpc.ts';

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
      const base = ctx.deps.previews.baseUrl;
      if (base === null) {
        throw new AppError('INVALID_STATE', 'previews are off on this server; set STUDIO_PREVIEW_PORT');
      }
      await ctx.deps.sessions.withSandbox(
        ctx.principal.userId,
        input.sessionId,
        auditOf(ctx),
        async () => {},
      );
      const grant = ctx.deps.previews.create(ctx.principal.userId, input.sessionId, input.port);
      return {
        url: `${base}${PREVIEW_AUTH_PATH}?token=${grant.token}`,
        expiresAt: grant.expiresAt.toISOString(),
      };
    }),
});
