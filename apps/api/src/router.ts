import { authRouter } from './routers/auth.ts';
import { backendsRouter } from './routers/backends.ts';
import { eventsRouter } from './routers/events.ts';
import { execRouter } from './routers/exec.ts';
import { filesRouter } from './routers/files.ts';
import { previewsRouter } from './routers/previews.ts';
import { sessionsRouter } from './routers/sessions.ts';
import { systemRouter } from './routers/system.ts';
import { tokensRouter } from './routers/tokens.ts';
import { usersRouter } from './routers/users.ts';
import { router } from './trpc.ts';

/** Every procedure of the API, by domain. Procedure names are the public contract. */
export const appRouter = router({
  auth: authRouter,
  tokens: tokensRouter,
  users: usersRouter,
  backends: backendsRouter,
  sessions: sessionsRouter,
  files: filesRouter,
  exec: execRouter,
  events: eventsRouter,
  previews: previewsRouter,
  system: systemRouter,
});

/** The router's type: the only thing clients (web, MCP, @studio/client) import from the API. */
export type AppRouter = typeof appRouter;
