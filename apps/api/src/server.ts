import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { App } from './app.ts';
import { createContextFactory, requestMeta } from './core/context.ts';
import { newId } from './core/ids.ts';
import { createFastPath } from './core/trpc-fast-path.ts';
import { startPreviewServer } from './preview/preview.ts';
import { createAppRouter } from './router.ts';
import { attachTerminal } from './terminal/terminal.ts';

/** Where tRPC is served. */
export const TRPC_PATH = '/trpc';

const API_HEADERS: Record<string, string> = {
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};

/** A listening API. */
export interface StudioServer {
  server: Server;
  /** `http://host:port` */
  url: string;
  /** The preview proxy's origin, when STUDIO_PREVIEW_PORT is set. */
  previewUrl: string | undefined;
  /** The metrics listener (`http://host:port/metrics`), when STUDIO_METRICS_PORT is set. */
  metricsUrl: string | undefined;
  registry: Registry;
  /** Stops accepting, lets in-flight requests finish (up to `graceMs`), then closes the app. */
  close(graceMs?: number): Promise<void>;
}

/** Options for {@link startServer}. */
export interface StartServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** How often open terminals re-check their credential (ms); default 15 s. */
  terminalRecheckMs?: number;
}

function clientIp(req: IncomingMessage, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = req.headers['x-forwarded-for'];
    const first = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim();
    if (first && first.length <= 64) return first;
  }
  return req.socket.remoteAddress ?? 'unknown';
}

function isHttps(req: IncomingMessage, trustProxy: boolean): boolean {
  if ((req.socket as TLSSocket).encrypted) return true;
  return trustProxy && req.headers['x-forwarded-proto'] === 'https';
}

/** Whether `Authorization` is `Bearer <token>` (compared in constant time). */
function bearerIs(req: IncomingMessage, token: string): boolean {
  const given = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1]?.trim() ?? '';
  const digest = (v: string) => createHash('sha256').update(v).digest();
  return timingSafeEqual(digest(given), digest(token));
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(body));
}

/**
 * Serves the app over node:http: tRPC under `/trpc`, the terminal WebSocket on `/terminal`, plus `/healthz` (the process is up), `/readyz` (the store
 * answers and a backend is available) and `/metrics` (Prometheus). Every response carries `X-Request-Id` and
 * strict security headers; one JSON log line per request, without credentials or query strings.
 */
export async function startServer(app: App, options: StartServerOptions): Promise<StudioServer> {
  const { deps } = app;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: 'studio_http_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['route', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'studio_http_request_duration_seconds',
    help: 'HTTP request duration by route',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [registry],
  });

  new Gauge({
    name: 'studio_workspaces_read_only',
    help: 'Sandboxes whose workspace filesystem went read-only (a host write error), as of the last reconciliation',
    registers: [registry],
    collect() {
      this.set(deps.sessions.readOnlyWorkspaces);
    },
  });

  const maxFile = deps.policy.files.maxFileBytes;
  const appRouter = createAppRouter(deps.schemas);
  const procedures = new Set(Object.keys(appRouter._def.procedures));
  const trpcOptions = {
    router: appRouter,
    createContext: createContextFactory(deps),
    basePath: `${TRPC_PATH}/`,
    // A base64 file at the policy's size, JSON-escaped, with room for the envelope.
    maxBodySize: 2 * maxFile + 1024 * 1024,
  };
  const trpc = createHTTPHandler(trpcOptions);
  // Single queries and mutations skip the fetch-adapter round trip; everything else goes to tRPC's handler.
  const fast = createFastPath(trpcOptions);

  const handle = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    if (path === '/healthz') return sendJson(res, 200, { ok: true });
    if (path === '/readyz') {
      const store = await deps.store.ping().then(
        () => true,
        () => false,
      );
      const ready = await deps.sessions
        .ready()
        .catch(() => ({ ok: false, backends: [], readOnlyWorkspaces: 0 }));
      const ok = store && ready.ok;
      // A read-only workspace degrades, not fails, readiness: taking the API out of service would stop every
      // other session too.
      return sendJson(res, ok ? 200 : 503, {
        ok,
        store,
        backends: ready.backends.map((b) => ({ name: b.name, available: b.available })),
        degraded: ready.readOnlyWorkspaces > 0,
        readOnlyWorkspaces: ready.readOnlyWorkspaces,
      });
    }
    if (path === '/metrics' && req.method === 'GET') {
      // Metrics name routes, sessions' activity and the process's internals: never public (issue 16).
      const token = app.env.metrics.token;
      if (token === null) {
        return sendJson(res, 404, {
          error: {
            code: 'NOT_FOUND',
            message:
              'metrics are not served here: set STUDIO_METRICS_PORT (a listener of their own) or STUDIO_METRICS_TOKEN',
          },
        });
      }
      if (!bearerIs(req, token)) {
        res.setHeader('WWW-Authenticate', 'Bearer');
        return sendJson(res, 401, {
          error: { code: 'UNAUTHENTICATED', message: 'send STUDIO_METRICS_TOKEN as a bearer token' },
        });
      }
      res.setHeader('Content-Type', registry.contentType);
      res.end(await registry.metrics());
      return;
    }
    if (path.startsWith(`${TRPC_PATH}/`)) {
      if (!fast(req, res)) trpc(req, res);
      await new Promise<void>((resolve) => res.once('close', resolve));
      return;
    }
    sendJson(res, 404, {
      error: { code: 'NOT_FOUND', message: `no route ${path}; the API is under ${TRPC_PATH}` },
    });
  };

  const server = createServer((req, res) => {
    const started = process.hrtime.bigint();
    const requestId = newId('req_');
    requestMeta.set(req, {
      requestId,
      ip: clientIp(req, deps.trustProxy),
      https: isHttps(req, deps.trustProxy),
    });
    res.setHeader('X-Request-Id', requestId);
    for (const [k, v] of Object.entries(API_HEADERS)) res.setHeader(k, v);
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const procedure = path.startsWith(`${TRPC_PATH}/`) ? path.slice(TRPC_PATH.length + 1) : undefined;
    const route =
      procedure === undefined
        ? ['/healthz', '/readyz', '/metrics'].includes(path)
          ? path
          : 'other'
        : procedures.has(procedure)
          ? procedure
          : 'trpc_other';
    res.once('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      requests.inc({ route, status: String(res.statusCode) });
      duration.observe({ route }, seconds);
      if (route !== '/healthz' && route !== '/metrics') {
        deps.logger.info('request', {
          requestId,
          method: req.method,
          route,
          status: res.statusCode,
          durationMs: Math.round(seconds * 1000),
        });
      }
    });
    handle(req, res, path).catch((error: unknown) => {
      deps.logger.error('request failed', { requestId, error });
      if (!res.headersSent)
        sendJson(res, 500, { error: { code: 'INTERNAL', message: 'internal error', requestId } });
      else res.destroy();
    });
  });
  server.headersTimeout = 30_000;
  server.requestTimeout = 15 * 60_000;
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const dropped = new Counter({
    name: 'studio_terminal_dropped_bytes_total',
    help: 'PTY output dropped because a terminal client did not keep up',
    registers: [registry],
  });
  const terminals = attachTerminal(server, deps, {
    onDropped: (bytes) => dropped.inc(bytes),
    ...(options.terminalRecheckMs === undefined ? {} : { recheckMs: options.terminalRecheckMs }),
  });
  const previews =
    app.env.previewPort === undefined
      ? undefined
      : await startPreviewServer(deps, { host: options.host, port: app.env.previewPort }).catch(
          async (error: unknown) => {
            await new Promise<void>((resolve) => server.close(() => resolve()));
            throw error;
          },
        );
  const metrics =
    app.env.metrics.listen === null
      ? undefined
      : await startMetricsServer(registry, app.env.metrics.listen).catch(async (error: unknown) => {
          await previews?.close();
          await new Promise<void>((resolve) => server.close(() => resolve()));
          throw error;
        });
  deps.sessions.startSweeper();
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  return {
    server,
    url: `http://${host}:${address.port}`,
    previewUrl: previews?.url,
    metricsUrl: metrics?.url,
    registry,
    close(graceMs = 10_000) {
      closing ??= (async () => {
        terminals.close();
        await previews?.close();
        await metrics?.close();
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const timer = setTimeout(() => server.closeAllConnections(), graceMs);
        await closed;
        clearTimeout(timer);
        await app.close();
      })();
      return closing;
    },
  };
}

/** `/metrics` alone, on the operator's address (STUDIO_METRICS_HOST, STUDIO_METRICS_PORT); nothing else there. */
async function startMetricsServer(
  registry: Registry,
  listen: { host: string; port: number },
): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics' || req.method !== 'GET') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('only GET /metrics here\n');
      return;
    }
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': registry.contentType });
        res.end(text);
      },
      () => {
        res.writeHead(500);
        res.end();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
