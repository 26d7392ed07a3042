// The public surface of @studio/api. Clients import `type AppRouter` only; the rest is for the server's own
// entry point, tests and benchmarks.
export type { App, CreateAppOptions } from './app.ts';
export { backendsFromEnv, createApp, templatesDir } from './app.ts';
export type { Principal } from './auth/auth.ts';
export type { AppErrorCode, MappedError } from './core/errors.ts';
export { APP_ERROR_CODES, AppError, mapError } from './core/errors.ts';
export type { Env } from './env.ts';
export { loadEnv, parseEnv } from './env.ts';
export type { AppRouter } from './router.ts';
export type { StartServerOptions, StudioServer } from './server.ts';
export { startServer, TRPC_PATH } from './server.ts';
export type { SessionView } from './sessions/sessions-router.ts';
export type { TemplateView } from './templates/template-manager.ts';
export { templateRootfs } from './templates/template-manager.ts';
