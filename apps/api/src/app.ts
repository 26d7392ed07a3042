import { join } from 'node:path';
import type { IsolationBackend } from '@studio/isolation';
import { DockerBackend } from '@studio/isolation-docker';
import { createPolicySchemas, type RateLimiter } from '@studio/policy';
import { Auth, ensureAdmin, loadJwtKey } from './auth.ts';
import type { AppDeps } from './context.ts';
import type { Env } from './env.ts';
import { EventBus } from './event-bus.ts';
import { ExecRegistry } from './exec-registry.ts';
import { createLogger, type Logger } from './logger.ts';
import { PreviewGrants } from './preview.ts';
import { SessionManager } from './session-manager.ts';
import { type Db, openDb } from './store/db.ts';
import { Store } from './store/store.ts';

/** Options for {@link createApp}. Everything but `env` can be injected (tests pass backends and a database). */
export interface CreateAppOptions {
  env: Env;
  /** The isolation backends; default built from `env.backends`. */
  backends?: IsolationBackend[];
  /** The database; default PostgreSQL at `env.databaseUrl`, else PGlite in `<dataDir>/pglite`. */
  db?: Db;
  logger?: Logger;
  /** Extra labels on every sandbox (tests: `studio.test`). */
  sandboxLabels?: Record<string, string>;
  loginLimiter?: RateLimiter;
  createLimiter?: RateLimiter;
}

/** The wired API, not yet listening. */
export interface App {
  deps: AppDeps;
  env: Env;
  /** Set when this start created the first administrator. */
  bootstrap: { username: string; password: string; generated: boolean } | null;
  close(): Promise<void>;
}

/** The backends named by STUDIO_BACKENDS. `auto` means every backend this API knows how to build. */
export function backendsFromEnv(env: Env): IsolationBackend[] {
  const names = new Set(env.backends.includes('auto') ? ['docker'] : env.backends);
  const backends: IsolationBackend[] = [];
  for (const name of names) {
    if (name === 'docker') {
      backends.push(new DockerBackend({ dataDir: join(env.dataDir, 'docker'), instanceId: env.instanceId }));
    } else {
      throw new Error(
        `STUDIO_BACKENDS: backend ${name} is not wired into the API yet; use STUDIO_BACKENDS=docker (or auto)`,
      );
    }
  }
  return backends;
}

/** Opens the store (running migrations), loads the signing key, creates the first admin, wires the services. */
export async function createApp(options: CreateAppOptions): Promise<App> {
  const { env } = options;
  const logger = options.logger ?? createLogger({ level: env.logLevel });
  const db =
    options.db ?? (await openDb({ databaseUrl: env.databaseUrl, pgliteDir: join(env.dataDir, 'pglite') }));
  let store: Store;
  try {
    store = await Store.open(db);
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
  const admin = await ensureAdmin(store, env.adminPassword);
  const key = loadJwtKey({ secret: env.jwtSecret, dataDir: env.dataDir });
  const auth = new Auth({
    store,
    key,
    ...(options.loginLimiter ? { loginLimiter: options.loginLimiter } : {}),
  });
  const sessions = new SessionManager({
    store,
    backends: options.backends ?? backendsFromEnv(env),
    policy: env.policy,
    instanceId: env.instanceId,
    images: env.images,
    logger,
    ...(options.sandboxLabels ? { labels: options.sandboxLabels } : {}),
    ...(options.createLimiter ? { createLimiter: options.createLimiter } : {}),
  });
  const deps: AppDeps = {
    store,
    auth,
    sessions,
    policy: env.policy,
    schemas: createPolicySchemas(env.policy),
    logger,
    events: new EventBus(),
    execs: new ExecRegistry(),
    previews: new PreviewGrants(),
    origins: env.origins,
    trustProxy: env.trustProxy,
  };
  return {
    deps,
    env,
    bootstrap: admin.created
      ? { username: admin.username, password: admin.password, generated: admin.generated }
      : null,
    async close() {
      await sessions.close();
      await store.close();
    },
  };
}
