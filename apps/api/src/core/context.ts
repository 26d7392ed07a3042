import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Store } from '@studio/db';
import type { Policy, PolicySchemas } from '@studio/policy';
import type { Auth, Principal } from '../auth/auth.ts';
import { authCookieName, isLoopbackHost, readCookie } from '../auth/cookies.ts';
import type { ExecRegistry } from '../exec/exec-registry.ts';
import type { PreviewGrants } from '../preview/preview.ts';
import type { EventBus } from '../realtime/event-bus.ts';
import type { FileWatches } from '../realtime/file-watches.ts';
import type { Recorder } from '../recording/recorder.ts';
import type { SecretVault } from '../secrets/secret-vault.ts';
import type { AuditContext, SessionManager } from '../sessions/session-manager.ts';
import type { TemplateManager } from '../templates/template-manager.ts';
import type { Drain } from './drain.ts';
import type { Logger } from './logger.ts';

/** The long-lived parts every procedure can use. */
export interface AppDeps {
  store: Store;
  auth: Auth;
  sessions: SessionManager;
  policy: Policy;
  schemas: PolicySchemas;
  logger: Logger;
  /** Live events per session (events.subscribe). */
  events: EventBus;
  /** Watches of sandboxes' workspaces while someone subscribes to their events (changes made inside). */
  fileWatches: FileWatches;
  /** Streamed execs whose stdin is open (exec.write, exec.closeStdin). */
  execs: ExecRegistry;
  /** Preview grants (previews.create) and the preview origin. */
  previews: PreviewGrants;
  /** Extra origins allowed to send cookie-authenticated requests (besides the API's own). */
  origins: readonly string[];
  /** Trust X-Forwarded-For / X-Forwarded-Proto (only behind a proxy that sets them). */
  trustProxy: boolean;
  /** Graceful shutdown: whether the API drains, and the work still running (server.ts drives it). */
  drain: Drain;
  /** Seals secret values under the operator's key (secrets router). */
  vault: SecretVault;
  /** Templates: users' images, their builds and what sessions run (issue 19). */
  templates: TemplateManager;
  /** Session recordings: terminals' output and the event log, under the data dir (issue 22). */
  recorder: Recorder;
}

/** Per-request facts the HTTP layer computes before tRPC runs. */
export interface RequestMeta {
  requestId: string;
  ip: string;
  https: boolean;
}

/** Set by the server for every request; read by {@link createContextFactory}. */
export const requestMeta = new WeakMap<IncomingMessage, RequestMeta>();

export interface Context {
  deps: AppDeps;
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string;
  ip: string;
  https: boolean;
  /** The login cookie is `__Host-` and `Secure`: HTTPS, or a loopback host (a secure context for browsers). */
  secureCookie: boolean;
  /** Where the credential came from, if any. */
  credential: { value: string; source: 'bearer' | 'cookie' } | null;
  principal: Principal | null;
}

function readCredential(req: IncomingMessage, secureCookie: boolean): Context['credential'] {
  const authorization = req.headers.authorization;
  if (typeof authorization === 'string' && /^Bearer\s+/i.test(authorization)) {
    return { value: authorization.replace(/^Bearer\s+/i, '').trim(), source: 'bearer' };
  }
  const cookie = readCookie(req.headers.cookie, authCookieName(secureCookie));
  return cookie ? { value: cookie, source: 'cookie' } : null;
}

/**
 * The credential a request carries (a bearer token, or the sign-in cookie of its origin's kind), as tRPC's
 * context reads it: for code that must know the caller before tRPC runs (a cluster replica placing a call).
 */
export function requestCredential(req: IncomingMessage): string | undefined {
  const meta = requestMeta.get(req);
  return readCredential(req, (meta?.https ?? false) || isLoopbackHost(req.headers.host))?.value;
}

/** Builds tRPC's createContext for the node-http adapter. */
export function createContextFactory(deps: AppDeps) {
  return ({ req, res }: { req: IncomingMessage; res: ServerResponse }): Context => {
    const meta = requestMeta.get(req) ?? { requestId: 'req_unknown', ip: 'unknown', https: false };
    const secureCookie = meta.https || isLoopbackHost(req.headers.host);
    return {
      deps,
      req,
      res,
      requestId: meta.requestId,
      ip: meta.ip,
      https: meta.https,
      secureCookie,
      credential: readCredential(req, secureCookie),
      principal: null,
    };
  };
}

/** The audit facts of a request. */
export function auditOf(ctx: Context): AuditContext {
  return { actorId: ctx.principal?.userId ?? null, ip: ctx.ip, requestId: ctx.requestId };
}
