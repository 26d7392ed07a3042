import { Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ProxyServer } from 'http-proxy-3';

// Runs in the web server (server.ts), never in the browser bundle: no page imports this file.

/** Options for {@link createApiProxy}. */
export interface ApiProxyOptions {
  /** The API's base URL, e.g. `http://127.0.0.1:4000`. */
  apiUrl: string;
}

/** Forwards the browser's API traffic (`/trpc/*`, the `/terminal` WebSocket) to the API. */
export interface ApiProxy {
  /** Proxies the request and returns true when it is API traffic; false: not ours (Next serves it). */
  web(req: IncomingMessage, res: ServerResponse): boolean;
  /** Proxies the upgrade and returns true when it is the terminal's; false: not ours. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean;
  /** Closes the kept-alive connections to the API. */
  close(): void;
}

// Forwarding headers a client sent are not passed on: only this proxy says who the client is.
const FORWARDED = ['forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip'];
// Hop-by-hop (RFC 9110 §7.6.1): about the browser's connection to this server, not this server's to the API.
const HOP_BY_HOP = ['keep-alive', 'proxy-connection', 'te', 'trailer'];

/** The request's path as the API will read it (dot segments resolved), without the query. */
function pathOf(req: IncomingMessage): string | null {
  const target = req.url ?? '';
  if (!target.startsWith('/')) return null;
  try {
    return new URL(target, 'http://web.invalid').pathname;
  } catch {
    return null;
  }
}

/** API traffic: `/trpc/…` once `..` and `%2e` segments are resolved (so `/trpc/../x` is not), else not ours. */
export function isApiPath(req: IncomingMessage): boolean {
  return pathOf(req)?.startsWith('/trpc/') === true;
}

/** The terminal's WebSocket endpoint, exactly. */
export function isTerminalPath(req: IncomingMessage): boolean {
  return pathOf(req) === '/terminal';
}

/**
 * Strips what the browser may not decide (forwarding headers, hop-by-hop headers) and names the client by the
 * socket's own address: the API uses it for per-address login limits when it trusts this proxy
 * (STUDIO_TRUST_PROXY=true). Host stays the web origin's; Origin passes unchanged and the API accepts it through
 * STUDIO_ORIGINS.
 */
function sanitize(req: IncomingMessage): Record<string, string> {
  for (const name of [...FORWARDED, ...HOP_BY_HOP]) delete req.headers[name];
  const added: Record<string, string> = { 'x-forwarded-proto': 'http' };
  if (req.socket.remoteAddress) added['x-forwarded-for'] = req.socket.remoteAddress;
  return added;
}

function unreachable(res: ServerResponse | Socket): void {
  if (!('writeHead' in res)) {
    res.destroy();
    return;
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // The same shape as the API's errors, so the browser shows its message by code; never the cause.
  res.writeHead(502, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(
    JSON.stringify({
      error: { message: 'the Studio API is not reachable', data: { studioCode: 'API_UNREACHABLE' } },
    }),
  );
}

/**
 * The browser talks to one origin: this proxy forwards `/trpc/*` (queries, mutations and SSE subscriptions,
 * streamed unbuffered) and the `/terminal` WebSocket upgrade to the API, through `http-proxy-3`.
 */
export function createApiProxy(options: ApiProxyOptions): ApiProxy {
  const target = new URL(options.apiUrl);
  // Kept-alive connections to the API: a page makes many small calls.
  const agent = new Agent({ keepAlive: true });
  // No proxy timeout: an event stream stays open as long as the page does.
  const proxy = new ProxyServer({ target, agent, xfwd: false });

  proxy.on('proxyRes', (proxyRes, _req, res) => {
    // The API's connection headers are about its connection to this proxy.
    for (const name of ['connection', ...HOP_BY_HOP]) delete proxyRes.headers[name];
    // An event stream is live from its first byte: send the headers now rather than with the first event.
    if (String(proxyRes.headers['content-type'] ?? '').startsWith('text/event-stream')) {
      queueMicrotask(() => {
        if (!res.headersSent && !res.writableEnded) res.flushHeaders();
      });
    }
  });
  // The browser gone, the API's socket goes too: the library only half-closes it, and a WebSocket peer that
  // sent FIN has left (WebSockets never half-close).
  proxy.on('proxyReqWs', (proxyReq, _req, socket) => {
    proxyReq.on('upgrade', (_res, apiSocket: Socket) => {
      socket.once('end', () => socket.destroy());
      socket.once('close', () => apiSocket.destroy());
    });
  });
  // Errors reach the browser as a fixed message: never the cause, its stack or the API's address.
  proxy.on('error', (_error, _req, res) => unreachable(res as ServerResponse | Socket));

  return {
    web(req, res) {
      if (!isApiPath(req)) return false;
      proxy.web(req, res, { headers: sanitize(req) });
      return true;
    },
    upgrade(req, socket, head) {
      if (!isTerminalPath(req)) return false;
      socket.on('error', () => socket.destroy());
      // An upgraded socket leaves the pool: no agent for it.
      proxy.ws(req, socket, head, { headers: sanitize(req), agent: false });
      return true;
    },
    close() {
      agent.destroy();
      proxy.close();
    },
  };
}
