import { authedProcedure, router } from '../core/trpc.ts';

export const backendsRouter = router({
  /** The isolation backends enabled on this server, whether each is usable now, and what it can do. */
  list: authedProcedure.query(({ ctx }) => ctx.deps.sessions.listBackends()),
});
