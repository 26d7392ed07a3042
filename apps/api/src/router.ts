import type { PolicySchemas } from '@studio/policy';
import { authRouter } from './auth/auth-router.ts';
import { tokensRouter } from './auth/tokens-router.ts';
import { usersRouter } from './auth/users-router.ts';
import { clusterRouter } from './cluster/cluster-router.ts';
import { router } from './core/trpc.ts';
import { execRouter } from './exec/exec-router.ts';
import { filesRouter } from './files/files-router.ts';
import { previewsRouter } from './preview/previews-router.ts';
import { eventsRouter } from './realtime/events-router.ts';
import { recordingsRouter } from './recording/recordings-router.ts';
import { secretsRouter } from './secrets/secrets-router.ts';
import { backendsRouter } from './sessions/backends-router.ts';
import { sessionsRouter } from './sessions/sessions-router.ts';
import { snapshotsRouter } from './sessions/snapshots-router.ts';
import { systemRouter } from './system/system-router.ts';
import { templatesRouter } from './templates/templates-router.ts';

/**
 * Every procedure of the API, by domain. Procedure names are the public contract. `schemas` are the policy's
 * input schemas bound to the running limits, so each procedure declares the schema it validates with.
 */
export const createAppRouter = (schemas: PolicySchemas) =>
  router({
    auth: authRouter,
    tokens: tokensRouter,
    users: usersRouter,
    backends: backendsRouter,
    sessions: sessionsRouter(schemas),
    files: filesRouter(schemas),
    exec: execRouter(schemas),
    events: eventsRouter,
    recordings: recordingsRouter,
    secrets: secretsRouter,
    templates: templatesRouter,
    snapshots: snapshotsRouter,
    previews: previewsRouter,
    system: systemRouter,
    cluster: clusterRouter,
  });

/** The router's type: the only thing clients (web, MCP, @studio/client) import from the API. */
export type AppRouter = ReturnType<typeof createAppRouter>;
