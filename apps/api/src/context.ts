import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Store } from '@studio/db';
import type { Policy, PolicySchemas } from '@studio/policy';
import type { Auth, Principal } from './auth.ts';
import type { EventBus } from './event-bus.ts';
import type { ExecRegistry } from './exec-registry.ts';
import type { FileWatches } from './file-watches.ts';
import type { Logger } from './logger.ts';
import type { PreviewGrants } from './preview.ts';
import type { AuditContext, SessionManager } from './session-manager.ts';

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
}

/** Per-request facts the HTTP layer computes before tRPC runs. */
export interface RequestMeta {
  requestId: string;
  ip: string;
  https: boolean;
}

/** Set by the server for every request; read by {@link createContextFactory}. */
export const requestMeta = new WeakMap<IncomingMessage, RequestMeta>();

/** The name of the login cookie (httpOnly, SameSite=Strict) over plain HTTP (local mode). */
export const AUTH_COOKIE = 'studio_token';
/**
 * Its name over HTTPS. The `__Host-` prefix makes browsers refuse it unless it is `Secure`, `Path=/` and has
 * no `Domain`: a page on a sibling host (a preview on `*.preview.<domain>`) cannot set or shadow it, so it
 * cannot plant a sign-in of its own (cookie tossing). Over HTTPS only this name is read.
 */
export const AUTH_COOKIE_SECURE = '__Host-studio_token';

/** The login cookie's name for a request over HTTPS or plain HTTP. */
export function authCookieName(https: boolean): string {
  return https ? AUTH_COOKIE_SECURE : AUTH_COOKIE;
}

export interface Context {
  deps: AppDeps;
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string;
  ip: string;
  https: boolean;
  /** Where the credential came from, if any. */
  credential: { value: string; source: 'bearer' | 'cookie' } | null;
  principal: Principal | null;
}

function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header || header.length > 16_384) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function readCredential(req: IncomingMessage, https: boolean): Context['credential'] {
  const authorization = req.headers.authorization;
  if (typeof authorization === 'string' && /^Bearer\s+/i.test(authorization)) {
    return { value: authorization.replace(/^Bearer\s+/i, '').trim(), source: 'bearer' };
  }
  const cookie = readCookie(req.headers.cookie, authCookieName(https));
  return cookie ? { value: cookie, source: 'cookie' } : null;
}

/** Builds tRPC's createContext for the node-http adapter. */
export function createContextFactory(deps: AppDeps) {
  return ({ req, res }: { req: IncomingMessage; res: ServerResponse }): Context => {
    const meta = requestMeta.get(req) ?? { requestId: 'req_unknown', ip: 'unknown', https: false };
    return {
      deps,
      req,
      res,
      requestId: meta.requestId,
      ip: meta.ip,
      https: meta.https,
      credential: readCredential(req, meta.https),
      principal: null,
    };
  };
}

/** The audit facts of a request. */
export function auditOf(ctx: Context): AuditContext {
  return { actorId: ctx.principal?.userId ?? null, ip: ctx.ip, requestId: ctx.requestId };
}

/** Sets (or clears, with `token` null) the login cookie. `Secure` when the request came over HTTPS. */
export function setAuthCookie(ctx: Context, token: string | null, maxAgeS: number): void {
  const parts = [
    `${authCookieName(ctx.https)}=${token ?? ''}`,
    'Path=/',
    'HttpOnly',
    'SameSite=Strict',
    `Max-Age=${token === null ? 0 : Math.max(0, Math.floor(maxAgeS))}`,
  ];
  if (ctx.https) parts.push('Secure');
  ctx.res.setHeader('Set-Cookie', parts.join('; '));
}
