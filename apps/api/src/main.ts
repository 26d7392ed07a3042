import { createApp } from './app.ts';
import { createLogger } from './core/logger.ts';
import { loadEnv } from './env.ts';
import { startServer } from './server.ts';

// A start-up failure (bad configuration, a data dir or instance id in use, an unreachable store) ends with one
// line: its message, the fix it names and its code, never a stack trace.
function fail(error: unknown): never {
  const code = (error as { code?: unknown } | null)?.code;
  const message = (error instanceof Error ? error.message : String(error)).replace(/\s*\n\s*/g, ' ');
  process.stderr.write(
    `Claude Studio API did not start: ${message}${typeof code === 'string' ? ` (code ${code})` : ''}\n`,
  );
  process.exit(1);
}

const env = (() => {
  try {
    return loadEnv();
  } catch (error) {
    fail(error);
  }
})();
const logger = createLogger({ level: env.logLevel });
const app = await createApp({
  env,
  logger,
  // Another process holds this instance id now: stop before two of us reconcile (and remove) the same sandboxes.
  onInstanceLost: (message) => fail(new Error(`${message}; restart it once the other process is stopped`)),
}).catch(fail);
// Recovery (SECURITY.md §7): adopt, fail or remove what the last run left, before serving; then periodically.
const report = await app.deps.sessions.reconcile().catch((error: unknown) => {
  logger.error('start-up reconciliation failed', { error });
  return null;
});
if (report) logger.info('reconciled', { ...report });
app.deps.sessions.startReconciler(env.reconcileIntervalMs);
// The warm pool fills in the background (STUDIO_WARM_POOL); a failure only means cold creates.
app.deps.sessions.startPool().catch((error: unknown) => logger.warn('warm pool did not start', { error }));
const api = await startServer(app, { host: env.host, port: env.port });
logger.info('listening', {
  url: api.url,
  previewUrl: api.previewUrl ?? null,
  store: app.deps.store.db.kind,
  dataDir: env.dataDir,
});

// Human-readable lines on stderr: where to go and how to sign in. The generated password appears only here,
// only once (it is never logged as a field and never stored in clear).
const lines = [`Claude Studio API listening on ${api.url} (tRPC at ${api.url}/trpc)`];
if (app.bootstrap?.generated) {
  lines.push(
    `First start: created user "${app.bootstrap.username}" with one-time password: ${app.bootstrap.password}`,
    'Sign in with it once: the IDE then asks you to choose your own. It is not shown again. (Set STUDIO_ADMIN_PASSWORD to choose it instead.)',
  );
} else if (app.bootstrap) {
  lines.push(
    `First start: created user "${app.bootstrap.username}" with the password from STUDIO_ADMIN_PASSWORD.`,
  );
}
lines.push(
  `Sign in: curl -s -X POST ${api.url}/trpc/auth.login -H 'content-type: application/json' -d '{"username":"admin","password":"…"}'`,
  "or from TypeScript: createStudioClient({ url, token }) from '@studio/client'",
);
process.stderr.write(`${lines.join('\n')}\n`);

// Graceful shutdown (issue 17): the first SIGTERM or SIGINT drains (new work refused, running execs and
// terminals get STUDIO_DRAIN_SECONDS to finish, streams told to go away), closes the store and exits 0. A second
// one exits at once: an operator who asks twice does not want to wait.
let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) {
      logger.warn('second signal: exiting now, without finishing the drain', { signal });
      process.exit(1);
    }
    stopping = true;
    logger.info('shutting down', { signal, drainSeconds: env.drainMs / 1000 });
    api.close(env.drainMs).then(
      () => {
        logger.info('stopped', {});
        process.exit(0);
      },
      (error: unknown) => {
        logger.error('shutdown failed', { error });
        process.exit(1);
      },
    );
  });
}
