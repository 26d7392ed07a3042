import { publicProcedure, router } from '../core/trpc.ts';

export const systemRouter = router({
  /** A no-op that proves the API answers (no credential, no store access). */
  ping: publicProcedure.query(() => ({ ok: true as const })),
});
