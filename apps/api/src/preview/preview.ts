import { createHash, randomBytes } from 'node:crypto';
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Sandbox } from '@studio/isolation';
import type { Policy } from '@studio/policy';
import { previewPathSchema } from '@studio/policy';
import { ProxyServer } from 'http-proxy-3';
import { AUTH_COOKIE, AUTH_COOKIE_SECURE } from '../auth/cookies.ts';
import type { SessionManager } from '../sessions/session-manager.ts';
import { sandboxAgent } from './sandbox-agent.ts';

/** The cookie that carries a preview grant on the preview origin (never the API's). */
export const PREVIEW_COOKIE = 'studio_preview';
/** Where a preview link lands: exchanges `?token=` for the cookie, then redirects to `/`. */
export const PREVIEW_AUTH_PATH = '/__studio/auth';
/** How long a preview grant (link and cookie) lives. */
export const PREVIEW_GRANT_MS = 60 * 60 * 1000;
const MAX_GRANTS = 10_000;

interface Grant {
  userId: string;
  sessionId: string;
  port: number;
  expiresAt: number;
}

/**
 * Host-name previews behind a reverse proxy (Traefik): each session and port gets its own origin,
 * `<port>-<label>.<domain>`, so one preview cannot read another's cookies or storage.
 */
export interface PreviewHostMode {
  /** The wildcard's parent, e.g. `preview.example.com` (lower case, no scheme or port). */
  domain: string;
  /** The public scheme; behind Traefik `https`, which also makes the grant cookie `Secure`. */
  scheme: 'http' | 'https';
}

/**
 * The DNS label that stands for a session in preview host names: 16 hex digits of SHA-256 of the session id.
 * Session ids are mixed case and carry `_`, which host names lose (browsers lower-case them) or refuse; the
 * grant still names the session, and the host must match the grant's, so the label only has to be stable.
 */
export function previewHostLabel(sessionId: string): string {
  return createHash('sha256').update(sessionId).digest('hex').slice(0, 16);
}

/** The host name of a session's port in host mode: `<port>-<label>.<domain>`. */
export function previewHostName(sessionId: string, port: number, domain: string): string {
  return `${port}-${previewHostLabel(sessionId)}.${domain}`;
}

/**
 * The host a request names (`Host` header), lower-cased, without its port and trailing dot; undefined when the
 * header is missing or not a plain DNS name.
 */
export function requestHostName(header: string | undefined): string | undefined {
  if (header === undefined || header.length > 253 + 6) return undefined;
  const name = header
    .toLowerCase()
    .replace(/:\d{1,5}$/, '')
    .replace(/\.$/, '');
  return /^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$/.test(name) && !name.includes('..') ? name : undefined;
}

/**
 * Preview grants: random 256-bit tokens, kept in memory, each naming one user, session and port, valid for
 * {@link PREVIEW_GRANT_MS}. Only `previews.create` (owner-checked) makes them, so one user cannot open
 * another's preview.
 */
export class PreviewGrants {
  readonly #grants = new Map<string, Grant>();
  /** The preview origin (`http://host:port`), set when the preview server listens; null when off. */
  baseUrl: string | null = null;
  /** Host-name mode (`STUDIO_PREVIEW_DOMAIN`): every session and port on its own host; null: one origin. */
  readonly hostMode: PreviewHostMode | null;

  constructor(options: { hostMode?: PreviewHostMode | null } = {}) {
    this.hostMode = options.hostMode ?? null;
  }

  /**
   * The link that opens a grant in a browser: on its own host name in host mode, else on the preview port.
   * Null when previews are off.
   */
  linkFor(grant: { sessionId: string; port: number; token: string }): string | null {
    if (this.baseUrl === null) return null;
    const origin = this.hostMode
      ? `${this.hostMode.scheme}://${previewHostName(grant.sessionId, grant.port, this.hostMode.domain)}`
      : this.baseUrl;
    return `${origin}${PREVIEW_AUTH_PATH}?token=${grant.token}`;
  }

  /**
   * Whether a request's `Host` may carry this grant: in host mode only the grant's own
   * `<port>-<label>.<domain>`; in port mode any (the port is the origin).
   */
  hostAllows(grant: Grant, hostHeader: string | undefined): boolean {
    if (!this.hostMode) return true;
    return requestHostName(hostHeader) === previewHostName(grant.sessionId, grant.port, this.hostMode.domain);
  }

  create(userId: string, sessionId: string, port: number): { token: string; expiresAt: Date } {
    const now = Date.now();
    if (this.#grants.size >= MAX_GRANTS) {
      for (const [k, g] of this.#grants) if (g.expiresAt <= now) this.#grants.delete(k);
      // Still full: forget the oldest (Map order is insertion order).
      while (this.#grants.size >= MAX_GRANTS) {
        const oldest = this.#grants.keys().next().value;
        if (oldest === undefined) break;
        this.#grants.delete(oldest);
      }
    }
    const token = randomBytes(32).toString('base64url');
    const expiresAt = now + PREVIEW_GRANT_MS;
    this.#grants.set(token, { userId, sessionId, port, expiresAt });
    return { token, expiresAt: new Date(expiresAt) };
  }

  get(token: string | undefined): Grant | undefined {
    if (token === undefined || !/^[A-Za-z0-9_-]{43}$/.test(token)) return undefined;
    const grant = this.#grants.get(token);
    if (!grant) return undefined;
    if (grant.expiresAt <= Date.now()) {
      this.#grants.delete(token);
      return undefined;
    }
    return grant;
  }
}

// Hop-by-hop headers (RFC 9110 §7.6.1) and credentials: never forwarded to the sandbox.
const DROP_REQUEST = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'host',
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-real-ip',
]);
const DROP_RESPONSE = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function readCookies(header: string | undefined): { grant: string | undefined; others: string[] } {
  const others: string[] = [];
  let grant: string | undefined;
  if (!header || header.length > 16_384) return { grant, others };
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    const name = (eq === -1 ? part : part.slice(0, eq)).trim();
    if (name === PREVIEW_COOKIE) grant = part.slice(eq + 1).trim();
    else if (name !== AUTH_COOKIE && name !== AUTH_COOKIE_SECURE && name !== '') others.push(part.trim());
  }
  return { grant, others };
}

/** The request headers the sandbox sees: no credentials, no Studio cookies, Host set to the target. */
function upstreamHeaders(
  headers: IncomingHttpHeaders,
  port: number,
  upgrade: boolean,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || DROP_REQUEST.has(k)) continue;
    out[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  const { others } = readCookies(headers.cookie);
  if (others.length > 0) out.cookie = others.join('; ');
  out.host = `127.0.0.1:${port}`;
  if (upgrade) {
    out.connection = 'Upgrade';
    if (typeof headers.upgrade === 'string') out.upgrade = headers.upgrade;
  }
  return out;
}

function plain(res: ServerResponse, status: number, text: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(`${text}\n`);
}

/** Like {@link plain}, unless an answer was already given (a timeout's 504 is not cut by the error after it). */
function fail(res: ServerResponse, status: number, text: string): void {
  if (!res.writableEnded) plain(res, status, text);
}

// Studio's cookie names, compared without case (browsers match the `__Host-` prefix so).
const STUDIO_COOKIES = new Set([PREVIEW_COOKIE, AUTH_COOKIE, AUTH_COOKIE_SECURE].map((n) => n.toLowerCase()));

/**
 * The sandbox's response headers as the browser may see them: no Set-Cookie that names a Studio cookie (set,
 * replace or clear the preview grant, or plant a sign-in: cookies ignore ports, so on the local preview port a
 * `studio_token` would reach the API) nor a nameless one; no hop-by-hop headers, except on a 101, which needs its
 * Connection and Upgrade.
 */
export function scrubResponse(headers: IncomingHttpHeaders, switching: boolean): void {
  const cookies = headers['set-cookie'];
  if (cookies !== undefined) {
    const kept = cookies.filter((line) => {
      const eq = line.indexOf('=');
      return eq > 0 && !STUDIO_COOKIES.has(line.slice(0, eq).trim().toLowerCase());
    });
    if (kept.length > 0) headers['set-cookie'] = kept;
    else delete headers['set-cookie'];
  }
  if (!switching) for (const name of DROP_RESPONSE) delete headers[name];
}

/** A listening preview proxy. */
export interface PreviewServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

/** What the preview proxy needs from the app: its limits, the grants, and the sessions' sandboxes. */
export interface PreviewServerDeps {
  policy: Pick<Policy, 'preview'>;
  previews: PreviewGrants;
  sessions: Pick<SessionManager, 'withSandbox'>;
}

/**
 * The preview proxy on its own port (its own origin, so preview pages cannot read Studio's cookies or call the
 * API with them; SECURITY.md §3). Every request needs a grant cookie (from a `previews.create` link); it is
 * forwarded, HTTP or WebSocket upgrade, only through `sandbox.connect(port)` of the grant's own session, never to
 * a host address. Credentials and Studio cookies are stripped both ways (the sandbox can neither read nor set
 * them); redirects go back to the browser unfollowed; the sandbox must answer within `preview.timeoutMs` and
 * bodies are cut after `preview.maxResponseBytes`. Forwarding is `http-proxy-3` over an agent whose only
 * connection is the sandbox stream ({@link sandboxAgent}).
 */
export async function startPreviewServer(
  deps: PreviewServerDeps,
  options: { host: string; port: number },
): Promise<PreviewServer> {
  const limits = deps.policy.preview;
  const grants = deps.previews;
  const connections = new Set<Duplex>();
  // Each forwarded request's answer timer, stopped by the sandbox's response head.
  const inflight = new WeakMap<IncomingMessage, { timer: NodeJS.Timeout }>();

  // Redirects are never followed (the browser gets them); no X-Forwarded-* is added (the sandbox learns nothing
  // of the browser or of this server).
  const proxy = new ProxyServer({ followRedirects: false, xfwd: false });
  proxy.on('proxyRes', (up, req, res) => {
    clearTimeout(inflight.get(req)?.timer);
    scrubResponse(up.headers, false);
    let sent = 0;
    // Runs before the library's pipe writes the chunk: a body never passes the limit.
    up.on('data', (chunk: Buffer) => {
      sent += chunk.byteLength;
      if (sent > limits.maxResponseBytes) {
        up.destroy();
        res.destroy();
      }
    });
  });
  // For upgrades the library writes the sandbox's answer (101 or a plain response) itself: scrub it first.
  proxy.on('proxyReqWs', (proxyReq) => {
    proxyReq.on('response', (up) => scrubResponse(up.headers, false));
    proxyReq.on('upgrade', (up) => scrubResponse(up.headers, true));
  });

  const resolve = async (req: IncomingMessage): Promise<{ sandbox: Sandbox; grant: Grant } | string> => {
    const grant = grants.get(readCookies(req.headers.cookie).grant);
    if (!grant) return 'no valid preview grant: open the link from previews.create again';
    if (!grants.hostAllows(grant, req.headers.host)) {
      return 'this preview grant is for another preview host: open the link from previews.create again';
    }
    try {
      const sandbox = await deps.sessions.withSandbox(
        grant.userId,
        grant.sessionId,
        { actorId: grant.userId, ip: null, requestId: null },
        async (s) => s,
      );
      return { sandbox, grant };
    } catch {
      return 'the session of this preview is not running';
    }
  };

  /** A stream to the grant's port in the grant's own sandbox, tracked until it closes. */
  const open = async (resolved: { sandbox: Sandbox; grant: Grant }): Promise<Duplex | null> => {
    let stream: Duplex;
    try {
      stream = await resolved.sandbox.connect(resolved.grant.port);
    } catch {
      return null;
    }
    connections.add(stream);
    stream.once('close', () => connections.delete(stream));
    stream.on('error', () => stream.destroy());
    return stream;
  };

  /** Forwarding over `stream` only: the agent hands it to the request, and the target host is never dialled. */
  const via = (stream: Duplex, port: number) => ({
    target: new URL(`http://sandbox.invalid:${port}`),
    agent: sandboxAgent(stream),
  });

  const onRequest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const target = req.url ?? '/';
    if (!target.startsWith('/')) return plain(res, 400, 'bad request target');
    const path = target.split('?')[0];
    if (path === PREVIEW_AUTH_PATH) {
      const token = new URL(target, 'http://preview').searchParams.get('token') ?? undefined;
      const grant = grants.get(token);
      if (!grant) return plain(res, 401, 'this preview link is invalid or expired');
      // A grant's cookie is only ever set on its own host, so a link cannot plant it on another preview.
      if (!grants.hostAllows(grant, req.headers.host)) {
        return plain(res, 404, 'this preview link belongs to another preview host');
      }
      const secure = grants.hostMode?.scheme === 'https' ? '; Secure' : '';
      res.writeHead(302, {
        location: '/',
        'set-cookie': `${PREVIEW_COOKIE}=${token}; Path=/; HttpOnly; SameSite=Lax${secure}; Max-Age=${PREVIEW_GRANT_MS / 1000}`,
        'cache-control': 'no-store',
      });
      res.end();
      return;
    }
    if (!previewPathSchema.safeParse(target).success) return plain(res, 400, 'bad request target');
    const resolved = await resolve(req);
    if (typeof resolved === 'string') return plain(res, 401, resolved);
    const stream = await open(resolved);
    if (!stream) return plain(res, 502, `nothing answers on port ${resolved.grant.port} in the sandbox`);
    const timer = setTimeout(() => {
      fail(res, 504, `the sandbox did not answer within ${limits.timeoutMs} ms`);
      stream.destroy();
    }, limits.timeoutMs);
    inflight.set(req, { timer });
    res.on('close', () => {
      clearTimeout(timer);
      stream.destroy();
    });
    req.headers = upstreamHeaders(req.headers, resolved.grant.port, false);
    proxy.web(req, res, via(stream, resolved.grant.port), () => {
      clearTimeout(timer);
      fail(res, 502, 'the preview server in the sandbox failed');
    });
  };

  const onUpgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    const refuse = (status: string): void => {
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    socket.on('error', () => socket.destroy());
    const target = req.url ?? '/';
    if (!previewPathSchema.safeParse(target).success) return refuse('400 Bad Request');
    const resolved = await resolve(req);
    if (typeof resolved === 'string') return refuse('401 Unauthorized');
    const stream = await open(resolved);
    if (!stream) return refuse('502 Bad Gateway');
    // The browser gone, the sandbox's side goes too (the library alone would only half-close it).
    socket.once('close', () => stream.destroy());
    req.headers = upstreamHeaders(req.headers, resolved.grant.port, true);
    proxy.ws(req, socket, head, via(stream, resolved.grant.port), () => socket.destroy());
  };

  const server = createServer((req, res) => {
    onRequest(req, res).catch(() => plain(res, 500, 'preview proxy error'));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    onUpgrade(req, socket, head).catch(() => socket.destroy());
  });
  server.headersTimeout = 30_000;
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(options.port, options.host, () => {
      server.off('error', fail);
      ok();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  grants.baseUrl = url;
  return {
    server,
    url,
    async close() {
      grants.baseUrl = null;
      for (const c of connections) c.destroy();
      const closed = new Promise<void>((ok) => server.close(() => ok()));
      server.closeAllConnections();
      await closed;
    },
  };
}
