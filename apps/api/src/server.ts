import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { TLSSocket } from 'node:tls';
import { TRPCError } from '@trpc/server';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { getHTTPStatusCodeFromError } from '@trpc/server/http';
import { TRPC_ERROR_CODES_BY_KEY } from '@trpc/server/rpc';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { App } from './app.ts';
import { FORWARDER_IDLE_SOCKET_MS, Forwarder, routedProcedures } from './cluster/forwarder.ts';
import { LostNodeSweeper } from './cluster/lost-nodes.ts';
import { NodeGuard } from './cluster/node-guard.ts';
import { createPlacementHints } from './cluster/placement-hints.ts';
import { startPreviewRelay } from './cluster/preview-relay.ts';
import { SwarmAvailability } from './cluster/swarm-availability.ts';
import { attachTerminalRelay } from './cluster/terminal-relay.ts';
import { createContextFactory, requestMeta } from './core/context.ts';
import { DRAIN_RETRY_AFTER_SECONDS } from './core/drain.ts';
import { type AppError, MappedCause, mapError } from './core/errors.ts';
import { newId } from './core/ids.ts';
import { createFastPath } from './core/trpc-fast-path.ts';
import { createE2bApi, E2B_PATH, ENVD_PORT } from './e2b/control-plane.ts';
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
  /**
   * Drains, then closes the app: new work is refused (503, Retry-After) and `/readyz` reports draining, idle
   * streams are told to go away at once, running calls, execs and terminals get up to `drainMs` (default the
   * env's `STUDIO_DRAIN_SECONDS`) to finish, then what is left is told to go away and closed.
   */
  close(drainMs?: number): Promise<void>;
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

/** The `Retry-After` of a retryable refusal (the store is down, the server drains), for tRPC and the fast path. */
function retryAfterMeta({ errors }: { errors: TRPCError[] }): { headers?: Record<string, string> } {
  let retryAfter = 0;
  for (const error of errors) {
    const mapped = error.cause instanceof MappedCause ? error.cause.mapped : mapError(error);
    retryAfter = Math.max(retryAfter, mapped.retryAfterSeconds ?? 0);
  }
  return retryAfter > 0 ? { headers: { 'Retry-After': String(retryAfter) } } : {};
}

/** A refusal of the cluster's forwarder (issue 23), in tRPC's error shape, with `Retry-After` when retryable. */
function trpcError(res: ServerResponse, error: AppError, requestId: string): void {
  const mapped = mapError(error);
  const status = getHTTPStatusCodeFromError(new TRPCError({ code: mapped.trpcCode }));
  if (mapped.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(mapped.retryAfterSeconds));
  sendJson(res, status, {
    error: {
      message: mapped.message,
      code: TRPC_ERROR_CODES_BY_KEY[mapped.trpcCode],
      data: {
        code: mapped.trpcCode,
        httpStatus: status,
        studioCode: mapped.studioCode,
        path: null,
        requestId,
      },
    },
  });
}

/** A refusal made before tRPC runs, in the shape tRPC's error formatter gives every other error. */
function trpcRefusal(
  res: ServerResponse,
  status: 400 | 413,
  studioCode: string,
  message: string,
  requestId: string,
): void {
  const code = status === 413 ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST';
  // The body is not read: close the connection rather than drain what may be a large or endless upload.
  res.setHeader('Connection', 'close');
  sendJson(res, status, {
    error: {
      message,
      code: TRPC_ERROR_CODES_BY_KEY[code],
      data: { code, httpStatus: status, studioCode, path: null, requestId },
    },
  });
}

// EventSource clients reconnect after this many ms (the SSE `retry:` field): a stream told to go away, or cut
// by a network blip, comes back in 2 s rather than the EventSource default of 3 s, and never in a tight loop.
const SSE_RETRY_MS = DRAIN_RETRY_AFTER_SECONDS * 1000;
/** How long a node keeps an idle connection from a replica: well past the replicas' own limit. */
const NODE_KEEP_ALIVE_MS = FORWARDER_IDLE_SOCKET_MS + 30_000;

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
  // A base64 file at the policy's size, JSON-escaped, with room for the envelope.
  const maxBodyBytes = 2 * maxFile + 1024 * 1024;
  const { requestTimeoutMs, maxBatchCalls } = app.env.edge;
  const drain = deps.drain;
  const appRouter = createAppRouter(deps.schemas);
  const procedures = new Set(Object.keys(appRouter._def.procedures));
  const trpcOptions = {
    router: appRouter,
    createContext: createContextFactory(deps),
    basePath: `${TRPC_PATH}/`,
    // Enforced while the body streams in (a chunked body has no length to check up front).
    maxBodySize: maxBodyBytes,
    // A backstop: handle() refuses larger batches first, with a Studio code.
    maxBatchSize: maxBatchCalls,
    // A retryable refusal (the store is down, the server drains) says when to retry.
    responseMeta: retryAfterMeta,
  };
  const trpc = createHTTPHandler(trpcOptions);
  // E2B's API (issue 21): the control plane and envd under /e2b, envd and ports by host name on the preview site.
  const e2b = createE2bApi(deps, {
    // A node keeps the deadlines of its own sandboxes only.
    instanceId: app.env.role === 'node' ? app.env.instanceId : undefined,
    domain: () =>
      app.env.e2bDomain ?? `localhost:${previews ? new URL(previews.url).port : app.env.previewPort}`,
  });
  // Single queries and mutations skip the fetch-adapter round trip; everything else goes to tRPC's handler.
  const fast = createFastPath(trpcOptions);
  // Scale-out (issue 23): a replica forwards each session's calls to its node; a node serves replicas only.
  const cluster = app.env.cluster;
  const secret = cluster === null ? null : Buffer.from(cluster.secret, 'utf8');
  const forwarder =
    app.env.role === 'api' && secret !== null
      ? new Forwarder({
          store: deps.store,
          secret,
          logger: deps.logger,
          routed: routedProcedures(appRouter._def.procedures),
          defaultMemoryBytes: deps.policy.sandbox.memoryBytes,
          maxBodyBytes,
          hints: createPlacementHints(deps),
        })
      : null;
  // The client of a request the replica relays (terminal, preview, E2B), as its other requests see it.
  const clientOf = (req: IncomingMessage) => ({
    ip: clientIp(req, deps.trustProxy),
    https: isHttps(req, deps.trustProxy),
  });
  const guard = app.env.role === 'node' && secret !== null ? new NodeGuard({ secret, maxBodyBytes }) : null;
  // Replicas fail the sessions of a node that stopped reporting; node services on Swarm managers keep each node's
  // Swarm availability in the store (placement honours drain and pause).
  const lostNodes =
    forwarder === null ? null : new LostNodeSweeper({ store: deps.store, logger: deps.logger });
  const swarm = guard !== null ? new SwarmAvailability({ store: deps.store, logger: deps.logger }) : null;

  const handle = async (
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    requestId: string,
  ): Promise<void> => {
    if (path === '/healthz') return sendJson(res, 200, { ok: true });
    if (path === '/readyz' && drain.draining) {
      // Out of rotation at once (Traefik's health check), while running work finishes here.
      res.setHeader('Retry-After', String(DRAIN_RETRY_AFTER_SECONDS));
      return sendJson(res, 503, { ok: false, draining: true });
    }
    if (path === '/readyz' && forwarder !== null) {
      // A replica is ready when the store answers: it runs no sandboxes (the nodes report their own).
      const store = await deps.store.ping().then(
        () => true,
        () => false,
      );
      return sendJson(res, store ? 200 : 503, { ok: store, store, role: 'api' });
    }
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
    if (path === E2B_PATH || path.startsWith(`${E2B_PATH}/`)) {
      const meta = { requestId, ip: requestMeta.get(req)?.ip ?? 'unknown' };
      if (drain.draining) {
        res.setHeader('Retry-After', String(DRAIN_RETRY_AFTER_SECONDS));
        return sendJson(res, 503, { code: 503, message: 'the server is restarting; retry shortly' });
      }
      // A control-plane call finishes before the drain ends; envd streams (a process's output) are told to go.
      const done = path.startsWith(`${E2B_PATH}/envd`) ? () => undefined : drain.track();
      try {
        if (forwarder !== null) {
          const outcome = await forwarder.e2b(req, res, path, clientOf(req));
          if (outcome.kind === 'forwarded') return await new Promise<void>((r) => res.once('close', r));
          if (outcome.kind === 'refused') {
            // E2B's error shape; the SDK retries a 503.
            return sendJson(res, 503, { code: 503, message: mapError(outcome.error).message });
          }
        }
        await e2b.handle(req, res, path, meta);
      } finally {
        done();
      }
      return;
    }
    if (path === '/files') {
      if (forwarder !== null) {
        const outcome = await forwarder.e2b(req, res, path, clientOf(req));
        if (outcome.kind === 'forwarded') return await new Promise<void>((r) => res.once('close', r));
      }
      return e2b.handleRootFiles(req, res, { requestId, ip: requestMeta.get(req)?.ip ?? 'unknown' });
    }
    if (path.startsWith(`${TRPC_PATH}/`)) {
      const declared = Number(req.headers['content-length'] ?? 0);
      if (declared > maxBodyBytes) {
        return trpcRefusal(
          res,
          413,
          // The code tRPC gives a body found too large while it streams in: one code for both.
          'PAYLOAD_TOO_LARGE',
          `the request body is larger than ${maxBodyBytes} bytes`,
          requestId,
        );
      }
      const query = (req.url ?? '').split('?')[1] ?? '';
      if (new URLSearchParams(query).get('batch') === '1') {
        // Each call of a batch runs as its own call (and takes from each per-call limiter as one): without a cap
        // one request carries any number of them past every per-request limit.
        const calls = path.slice(TRPC_PATH.length + 1).split(',').length;
        if (calls > maxBatchCalls) {
          return trpcRefusal(
            res,
            400,
            'LIMIT_EXCEEDED',
            `a batched request carries at most ${maxBatchCalls} calls (this one has ${calls}); split it`,
            requestId,
          );
        }
      }
      if (forwarder !== null && new URLSearchParams(query).get('batch') !== '1') {
        const meta = requestMeta.get(req);
        const outcome = await forwarder.trpc(req, res, path.slice(TRPC_PATH.length + 1), {
          ip: meta?.ip ?? 'unknown',
          https: meta?.https ?? false,
        });
        if (outcome.kind === 'refused') return trpcError(res, outcome.error, requestId);
        if (outcome.kind === 'forwarded') {
          await new Promise<void>((resolve) => res.once('close', resolve));
          return;
        }
      }
      if (fast(req, res)) {
        await new Promise<void>((resolve) => res.once('close', resolve));
        return;
      }
      const write = res.write.bind(res) as (...args: unknown[]) => boolean;
      let first = true;
      res.write = ((...args: unknown[]) => {
        if (first) {
          first = false;
          if (String(res.getHeader('content-type') ?? '').startsWith('text/event-stream')) {
            // A field line of the stream's first event (tRPC's `connected`), not an event of its own: clients
            // that count blocks see nothing new.
            write(`retry: ${SSE_RETRY_MS}\n`);
          }
        }
        return write(...args);
      }) as typeof res.write;
      trpc(req, res);
      await new Promise<void>((resolve) => res.once('close', resolve));
      return;
    }
    sendJson(res, 404, {
      error: { code: 'NOT_FOUND', message: `no route ${path}; the API is under ${TRPC_PATH}` },
    });
  };

  const server = createServer(
    {
      // Edge limits (SECURITY.md §5): headers and body must arrive within requestTimeoutMs in total, however
      // slowly they trickle (node counts until the request is fully received; a long response is not cut).
      // Expired requests are found by a periodic check: every second, not node's default 30 s.
      requestTimeout: requestTimeoutMs,
      headersTimeout: Math.min(10_000, requestTimeoutMs),
      connectionsCheckingInterval: 1000,
      // A node's only callers are API replicas, which keep connections to it open (forwarder.ts): it keeps them
      // longer than the replicas' own idle limit, so a replica never sends a call down a connection the node is
      // closing at that moment (the keep-alive race: the call fails with ECONNRESET before the node has read it).
      keepAliveTimeout: app.env.role === 'node' ? NODE_KEEP_ALIVE_MS : 5_000,
    },
    (req, res) => {
      const started = process.hrtime.bigint();
      const requestId = newId('req_');
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      requestMeta.set(req, {
        requestId,
        ip: clientIp(req, deps.trustProxy),
        https: isHttps(req, deps.trustProxy),
      });
      res.setHeader('X-Request-Id', requestId);
      for (const [k, v] of Object.entries(API_HEADERS)) res.setHeader(k, v);
      // Draining: every answer closes its connection, so the client's next request opens a new one (which a
      // proxy sends to another instance).
      if (drain.draining) res.setHeader('Connection', 'close');
      const procedure = path.startsWith(`${TRPC_PATH}/`) ? path.slice(TRPC_PATH.length + 1) : undefined;
      const route =
        procedure === undefined
          ? ['/healthz', '/readyz', '/metrics'].includes(path)
            ? path
            : path.startsWith(`${E2B_PATH}/`) || path === '/files'
              ? 'e2b'
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
      const admitted = async (): Promise<void> => {
        // A node answers only what a replica signed; the client it names is the one its limits and records see.
        if (guard !== null && path !== '/healthz' && path !== '/readyz') {
          const verdict = await guard.check(req);
          if (!verdict.ok) {
            res.setHeader('Connection', 'close');
            return sendJson(res, verdict.status, { error: { code: 'FORBIDDEN', message: verdict.message } });
          }
          requestMeta.set(req, { requestId, ...verdict.client });
        }
        await handle(req, res, path, requestId);
      };
      admitted().catch((error: unknown) => {
        deps.logger.error('request failed', { requestId, error });
        if (!res.headersSent)
          sendJson(res, 500, { error: { code: 'INTERNAL', message: 'internal error', requestId } });
        else res.destroy();
      });
    },
  );

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
  // A replica relays terminals to their session's node; a node (and single-box Studio) serves them.
  const terminals =
    forwarder !== null
      ? attachTerminalRelay(server, deps, forwarder, {
          draining: () => drain.draining,
          clientOf,
        })
      : attachTerminal(server, deps, {
          onDropped: (bytes) => dropped.inc(bytes),
          draining: () => drain.draining,
          ...(options.terminalRecheckMs === undefined ? {} : { recheckMs: options.terminalRecheckMs }),
          recorder: deps.recorder.terminal,
          ...(guard === null ? {} : { admit: async (req: IncomingMessage) => (await guard.check(req)).ok }),
        });
  // A replica relays the preview site to the node running each session; a node serves only what replicas signed.
  const previews =
    app.env.previewPort === undefined
      ? undefined
      : forwarder !== null
        ? await startPreviewRelay(deps, forwarder, {
            host: options.host,
            port: app.env.previewPort,
            clientOf,
          })
        : await startPreviewServer(
            {
              ...deps,
              e2b: {
                envdPort: ENVD_PORT,
                envd: (req, res, sandboxId, path) =>
                  e2b.handleEnvdHost(req, res, sandboxId, path, {
                    requestId: newId('req_'),
                    ip: req.socket.remoteAddress ?? 'unknown',
                  }),
                portAccess: (sandboxId, req) => {
                  const header = req.headers['e2b-traffic-access-token'];
                  return e2b.service.portAccess(sandboxId, Array.isArray(header) ? header[0] : header);
                },
              },
            },
            {
              host: options.host,
              port: app.env.previewPort,
              ...(guard === null
                ? {}
                : {
                    admit: async (req: IncomingMessage) =>
                      (await guard.check(req, { streamedBody: true })).ok,
                  }),
            },
          ).catch(async (error: unknown) => {
            await new Promise<void>((resolve) => server.close(() => resolve()));
            throw error;
          });
  const metrics =
    app.env.metrics.listen === null
      ? undefined
      : await startMetricsServer(registry, app.env.metrics.listen).catch(async (error: unknown) => {
          await previews?.close();
          await new Promise<void>((resolve) => server.close(() => resolve()));
          throw error;
        });
  deps.sessions.startSweeper();
  // E2B deadlines are kept by the node running each sandbox; a replica runs none.
  if (forwarder === null) e2b.service.start();
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  // Where replicas reach this node: STUDIO_NODE_URL, else the address it listens on.
  lostNodes?.start();
  // On Swarm a node learns its node id and the address it advertises from its own Docker.
  const swarmSelf = (await swarm?.self()) ?? null;
  if (swarmSelf !== null || cluster?.swarmNodeId) await swarm?.start();
  const reachable = (a: AddressInfo) =>
    `http://${['0.0.0.0', '::'].includes(a.address) ? hostname() : a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  const previewAddress = previews?.server.address() as AddressInfo | undefined;
  const everywhere = ['0.0.0.0', '::'].includes(address.address);
  const nodeUrl =
    cluster?.nodeUrl ??
    (swarmSelf !== null && everywhere ? `http://${swarmSelf.address}:${address.port}` : reachable(address));
  await app.node?.start({
    url: nodeUrl,
    // The preview listener on the same host as the node's own address.
    previewUrl:
      previewAddress === undefined
        ? null
        : `${new URL(nodeUrl).origin.replace(/:\d+$/, '')}:${previewAddress.port}`,
    swarmNodeId: cluster?.swarmNodeId ?? swarmSelf?.nodeId ?? null,
  });
  let closing: Promise<void> | undefined;
  return {
    server,
    url: `http://${host}:${address.port}`,
    previewUrl: previews?.url,
    metricsUrl: metrics?.url,
    registry,
    close(drainMs = app.env.drainMs) {
      closing ??= (async () => {
        drain.start();
        // A node first leaves placement: no new session lands on it while it drains.
        await app.node?.drain();
        const busy = () => ({ calls: drain.inFlight, execs: deps.execs.running, terminals: terminals.open });
        deps.logger.info('draining', { drainMs, ...busy() });
        const deadline = Date.now() + drainMs;
        while (Date.now() < deadline && Object.values(busy()).some((n) => n > 0)) {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        const left = busy();
        if (Object.values(left).some((n) => n > 0)) {
          deps.logger.warn('drain time is up; ending the work still running', { drainMs, ...left });
        }
        // Every stream still open gets the going-away signal; terminals close with 1001.
        drain.end();
        terminals.close();
        e2b.close();
        await previews?.close();
        await metrics?.close();
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        // A moment for the going-away events to reach their clients before the sockets are cut.
        const timer = setTimeout(() => server.closeAllConnections(), 500);
        await closed;
        clearTimeout(timer);
        forwarder?.close();
        swarm?.stop();
        await lostNodes?.stop();
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
  const server = createServer(
    // GETs only: a request that has not fully arrived in 10 s never will.
    { requestTimeout: 10_000, headersTimeout: 10_000, connectionsCheckingInterval: 1000 },
    (req, res) => {
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
    },
  );
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
