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
import { previewPathSchema, validatePreviewPort } from '@studio/policy';
import { ProxyServer } from 'http-proxy-3';
import { AUTH_COOKIE, AUTH_COOKIE_SECURE } from '../auth/cookies.ts';
import type { SessionManager } from '../sessions/session-manager.ts';
import { sandboxAgent } from './sandbox-agent.ts';

/**
 * The cookie that carries a preview grant on its preview host (never the IDE's or the API's). `__Host-`: no
 * other preview host can set or shadow it. `SameSite=None; Partitioned` because the IDE frames the preview from
 * another site; partitioned by the top-level site, it rides only in frames of the IDE (or the preview's own tab).
 */
export const PREVIEW_COOKIE = '__Host-studio_preview';
/** The grant cookie's name before previews moved to their own site; still scrubbed from sandbox responses. */
const LEGACY_PREVIEW_COOKIE = 'studio_preview';
// Studio's cookie names, compared without case (browsers match the `__Host-` prefix so): never passed to a
// sandbox, never set by one.
const STUDIO_COOKIES: ReadonlySet<string> = new Set(
  [PREVIEW_COOKIE, LEGACY_PREVIEW_COOKIE, AUTH_COOKIE, AUTH_COOKIE_SECURE].map((n) => n.toLowerCase()),
);

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
 * Where previews live: each session and port gets its own origin, `<port>-<label>.<domain>`, on a site that is
 * not Studio's (SECURITY.md §3), so a preview page cannot ride on or set Studio's cookies, nor read another
 * preview's. In production `<domain>` is a registrable domain of its own behind Traefik; locally it is
 * `localhost` (browsers resolve `*.localhost` to loopback) on the preview proxy's own port.
 */
export interface PreviewHostMode {
  /** The wildcard's parent, e.g. `studio-preview.net`, or `localhost` (lower case, no scheme or port). */
  domain: string;
  /** The public scheme; behind Traefik `https`. */
  scheme: 'http' | 'https';
  /** Links carry the preview proxy's own port (local mode); false: the scheme's default port (behind Traefik). */
  withPort?: boolean;
}

/** Local mode: `http://<port>-<label>.localhost:<preview port>`, another site than an IDE on 127.0.0.1. */
export const LOCAL_PREVIEW_HOSTS: PreviewHostMode = Object.freeze({
  domain: 'localhost',
  scheme: 'http',
  withPort: true,
});

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
  /** Where the preview proxy listens (`http://host:port`), set when it listens; null when off. */
  baseUrl: string | null = null;
  /** The preview host names (`STUDIO_PREVIEW_DOMAIN`; default {@link LOCAL_PREVIEW_HOSTS}). */
  readonly hostMode: PreviewHostMode;

  constructor(options: { hostMode?: PreviewHostMode | null } = {}) {
    this.hostMode = options.hostMode ?? LOCAL_PREVIEW_HOSTS;
  }

  /** The origin of a session's port, `<scheme>://<port>-<label>.<domain>[:<proxy port>]`; null when off. */
  originFor(sessionId: string, port: number): string | null {
    if (this.baseUrl === null) return null;
    const { scheme, domain, withPort } = this.hostMode;
    const suffix = withPort ? `:${new URL(this.baseUrl).port}` : '';
    return `${scheme}://${previewHostName(sessionId, port, domain)}${suffix}`;
  }

  /** The link that opens a grant in a browser, on the grant's own host name. Null when previews are off. */
  linkFor(grant: { sessionId: string; port: number; token: string }): string | null {
    const origin = this.originFor(grant.sessionId, grant.port);
    return origin === null ? null : `${origin}${PREVIEW_AUTH_PATH}?token=${grant.token}`;
  }

  /** Whether a request's `Host` may carry this grant: only the grant's own `<port>-<label>.<domain>`. */
  hostAllows(grant: Grant, hostHeader: string | undefined): boolean {
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
  'e2b-traffic-access-token',
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
    else if (name !== '' && !STUDIO_COOKIES.has(name.toLowerCase())) others.push(part.trim());
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

/**
 * A sandbox's Set-Cookie line as the browser may see it, or null to drop it: nameless lines and Studio's own
 * names (any case) are dropped; `Domain` is removed, so the cookie stays host-only on this preview's own host and
 * can never reach another preview (or, if configured wrongly, the IDE's site).
 */
export function scrubSetCookie(line: string): string | null {
  const semi = line.indexOf(';');
  const pair = semi === -1 ? line : line.slice(0, semi);
  const eq = pair.indexOf('=');
  if (eq <= 0) return null;
  const name = pair.slice(0, eq).trim();
  if (name === '' || STUDIO_COOKIES.has(name.toLowerCase())) return null;
  if (semi === -1) return line;
  const attributes = line
    .slice(semi + 1)
    .split(';')
    .filter((a) => !/^\s*domain\s*(=|$)/i.test(a));
  return [pair, ...attributes].join(';');
}

/**
 * The sandbox's response headers as the browser may see them: no Set-Cookie that names a Studio cookie (set,
 * replace or clear a preview grant or plant a sign-in) nor a nameless one, and none with a `Domain` (see
 * {@link scrubSetCookie}); no hop-by-hop headers, except on a 101, which needs its Connection and Upgrade.
 */
export function scrubResponse(headers: IncomingHttpHeaders, switching: boolean): void {
  const cookies = headers['set-cookie'];
  if (cookies !== undefined) {
    const kept = cookies.map(scrubSetCookie).filter((line): line is string => line !== null);
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
  /** E2B sandboxes by host name (issue 21); absent: only previews are served. */
  e2b?: PreviewE2bHooks;
}

/**
 * E2B's host names on the preview site: `49983-<sandbox id>.<domain>` is the sandbox's envd, `<port>-<sandbox
 * id>.<domain>` one of its ports (`sandbox.getHost(port)`). Sandbox ids are 32 hex digits, preview labels 16.
 */
export interface PreviewE2bHooks {
  /** The port envd is reached on. */
  envdPort: number;
  /** Serves an envd request for `sandboxId` (`path` with its query). */
  envd(req: IncomingMessage, res: ServerResponse, sandboxId: string, path: string): Promise<void>;
  /** Whose session a request for a port of `sandboxId` reaches, or why it may not. */
  portAccess(
    sandboxId: string,
    req: IncomingMessage,
  ): Promise<{ userId: string; sessionId: string } | string>;
}

/** The E2B sandbox and port a preview-site host name names (`<port>-<32 hex>.<domain>`), if it is one. */
export function e2bHostOf(
  hostHeader: string | undefined,
  domain: string,
): { port: number; sandboxId: string } | undefined {
  const name = requestHostName(hostHeader);
  const m = name === undefined ? null : /^([1-9][0-9]{0,4})-([0-9a-f]{32})\.(.+)$/.exec(name);
  if (!m || m[3] !== domain) return undefined;
  const port = Number(m[1]);
  return port >= 1 && port <= 65_535 ? { port, sandboxId: m[2] as string } : undefined;
}

/**
 * The preview proxy on its own port, serving `<port>-<label>.<domain>` hosts on a site that is not Studio's
 * (SECURITY.md §3), so preview pages can neither ride on Studio's cookies nor set them. Every request needs a grant cookie (from a `previews.create` link); it is
 * forwarded, HTTP or WebSocket upgrade, only through `sandbox.connect(port)` of the grant's own session, never to
 * a host address. Credentials and Studio cookies are stripped both ways (the sandbox can neither read nor set
 * them); redirects go back to the browser unfollowed; the sandbox must answer within `preview.timeoutMs` and
 * bodies are cut after `preview.maxResponseBytes`. Forwarding is `http-proxy-3` over an agent whose only
 * connection is the sandbox stream ({@link sandboxAgent}).
 */
export async function startPreviewServer(
  deps: PreviewServerDeps,
  options: {
    host: string;
    port: number;
    /** A node service's door (issue 23): a request it refuses (not signed by an API replica) gets 403 first. */
    admit?: (req: IncomingMessage) => Promise<boolean>;
  },
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

  /** The running sandbox of `grant`'s session (resumed if paused), or why there is none. */
  const sandboxOf = async (
    grant: Grant,
    notRunning: string,
  ): Promise<{ sandbox: Sandbox; grant: Grant } | string> => {
    try {
      const sandbox = await deps.sessions.withSandbox(
        grant.userId,
        grant.sessionId,
        { actorId: grant.userId, ip: null, requestId: null },
        async (s) => s,
      );
      return { sandbox, grant };
    } catch {
      return notRunning;
    }
  };

  const resolve = async (req: IncomingMessage): Promise<{ sandbox: Sandbox; grant: Grant } | string> => {
    const e2b = deps.e2b && e2bHostOf(req.headers.host, grants.hostMode.domain);
    if (deps.e2b && e2b) {
      // An E2B sandbox's port: E2B's access rule (public, or its traffic token), not a preview grant; the
      // preview port rules still hold (SECURITY.md: a second wall).
      try {
        validatePreviewPort(e2b.port);
      } catch (error) {
        return (error as Error).message;
      }
      const access = await deps.e2b.portAccess(e2b.sandboxId, req);
      if (typeof access === 'string') return access;
      return sandboxOf(
        { ...access, port: e2b.port, expiresAt: Number.POSITIVE_INFINITY },
        'the sandbox is not running',
      );
    }
    const grant = grants.get(readCookies(req.headers.cookie).grant);
    if (!grant) return 'no valid preview grant: open the link from previews.create again';
    if (!grants.hostAllows(grant, req.headers.host)) {
      return 'this preview grant is for another preview host: open the link from previews.create again';
    }
    return sandboxOf(grant, 'the session of this preview is not running');
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
      // Secure is accepted over HTTPS and on *.localhost (a secure context); Partitioned keeps the framed cookie
      // working where browsers block third-party cookies, and confines it to frames of the IDE's site.
      res.writeHead(302, {
        location: '/',
        'set-cookie': `${PREVIEW_COOKIE}=${token}; Path=/; HttpOnly; Secure; SameSite=None; Partitioned; Max-Age=${PREVIEW_GRANT_MS / 1000}`,
        'cache-control': 'no-store',
        'referrer-policy': 'no-referrer',
      });
      res.end();
      return;
    }
    const e2b = deps.e2b && e2bHostOf(req.headers.host, grants.hostMode.domain);
    if (deps.e2b && e2b?.port === deps.e2b.envdPort) {
      return deps.e2b.envd(req, res, e2b.sandboxId, path ?? '/');
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

  const admitted = async (req: IncomingMessage): Promise<boolean> =>
    options.admit === undefined || (await options.admit(req));
  const server = createServer((req, res) => {
    admitted(req)
      .then((ok) => (ok ? onRequest(req, res) : plain(res, 403, 'this node serves only the API replicas')))
      .catch(() => plain(res, 500, 'preview proxy error'));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    admitted(req)
      .then(async (ok) => {
        if (ok) return onUpgrade(req, socket, head);
        socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      })
      .catch(() => socket.destroy());
  });
  return listenPreviewServer(server, { ...options, grants, connections });
}

/**
 * Listens with a preview site's server (the proxy here, or a cluster replica's relay): its URL becomes the grants'
 * base; `close` ends the connections it tracks (streams to sandboxes, relayed sockets) and every other one.
 */
export async function listenPreviewServer(
  server: Server,
  options: {
    host: string;
    port: number;
    grants: PreviewGrants;
    connections: Set<Duplex>;
    onClose?: () => void;
  },
): Promise<PreviewServer> {
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
  options.grants.baseUrl = url;
  return {
    server,
    url,
    async close() {
      options.grants.baseUrl = null;
      for (const c of options.connections) c.destroy();
      const closed = new Promise<void>((ok) => server.close(() => ok()));
      server.closeAllConnections();
      options.onClose?.();
      await closed;
    },
  };
}
