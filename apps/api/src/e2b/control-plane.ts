import type { IncomingMessage, ServerResponse } from 'node:http';
import { Code } from '@connectrpc/connect';
import { e2bSandboxIdSchema, e2bSchemas } from '@studio/policy';
import type { z } from 'zod';
import type { Principal } from '../auth/auth.ts';
import type { AppDeps } from '../core/context.ts';
import { AppError, mapError } from '../core/errors.ts';
import type { AuditContext } from '../sessions/session-manager.ts';
import { E2bService } from './e2b-service.ts';
import { createEnvdHandler, type EnvdHandler, fileSignatureMatches, toEnvdFailure } from './envd/index.ts';

/** Where the E2B control plane is served on the API's listener: `E2B_API_URL=<api origin>/e2b`. */
export const E2B_PATH = '/e2b';
/** Where envd is served on the API's listener, by the `E2b-Sandbox-Id` header: `E2B_SANDBOX_URL=<api>/e2b/envd`. */
export const ENVD_PATH = `${E2B_PATH}/envd`;
/** The port E2B SDKs reach envd on (`49983-<id>.<domain>`). */
export const ENVD_PORT = 49983;

const MAX_BODY_BYTES = 256 * 1024;

/** What the server tells the E2B layer of a request. */
export interface E2bRequestMeta {
  requestId: string;
  ip: string;
}

/** The E2B API: control plane and envd, over Studio's sessions (issue 21). */
export interface E2bApi {
  service: E2bService;
  envd: EnvdHandler;
  /** Serves a request whose path starts with {@link E2B_PATH} on the API's listener. */
  handle(req: IncomingMessage, res: ServerResponse, path: string, meta: E2bRequestMeta): Promise<void>;
  /**
   * Serves `/files` at the API's root: what the SDK makes of a signed file URL under a fixed `E2B_SANDBOX_URL`
   * (it resolves `/files` against the URL, dropping its path). It names no sandbox: its signature does.
   */
  handleRootFiles(req: IncomingMessage, res: ServerResponse, meta: E2bRequestMeta): Promise<void>;
  /** Serves envd for sandbox `sandboxId` reached by host name (`49983-<id>.<domain>` on the preview listener). */
  handleEnvdHost(
    req: IncomingMessage,
    res: ServerResponse,
    sandboxId: string,
    path: string,
    meta: E2bRequestMeta,
  ): Promise<void>;
  close(): void;
}

/** E2B's error body: `{ code, message }`, the HTTP status as `code`; Studio's code beside it for the curious. */
function sendError(res: ServerResponse, status: number, message: string, studioCode: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify({ code: status, message, studioCode }));
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.statusCode = status;
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(body));
}

const TRPC_STATUS: Record<string, number> = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  PRECONDITION_FAILED: 412,
  PAYLOAD_TOO_LARGE: 413,
  UNPROCESSABLE_CONTENT: 422,
  TOO_MANY_REQUESTS: 429,
  SERVICE_UNAVAILABLE: 503,
  TIMEOUT: 504,
};

/**
 * THE mapping of Studio's errors to E2B's statuses, which the SDK turns into its error classes: 401
 * AuthenticationError, 429 RateLimitError (Studio's live-session limit is E2B's concurrency limit), 404
 * NotFoundError / SandboxNotFoundError, 423 for a person holding control (the SDK's SandboxError with Studio's
 * message), 503 ServiceBusyError.
 */
export function e2bStatusOf(studioCode: string, trpcCode: string): number {
  switch (studioCode) {
    case 'SESSION_LIMIT':
    case 'RATE_LIMITED':
      return 429;
    case 'HUMAN_HAS_CONTROL':
      // Locked, not 409: the SDK reads a 409 from pause as "already paused" and would hide the refusal.
      return 423;
    case 'INVALID_STATE':
      return 409;
    case 'TEMPLATE_NOT_FOUND':
      return 404;
    default:
      return TRPC_STATUS[trpcCode] ?? 500;
  }
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      throw new AppError('LIMIT_EXCEEDED', `the request body is larger than ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new AppError('INPUT_INVALID', 'the request body is not JSON');
  }
}

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  throw new AppError('INPUT_INVALID', `${what}: ${where}${issue?.message ?? 'invalid'}`);
}

/** Builds the E2B API over the app's deps. `domain`: what SDKs are told sandboxes live under. */
export function createE2bApi(
  deps: AppDeps,
  options: { domain: () => string; instanceId?: string | undefined },
): E2bApi {
  const envd = createEnvdHandler(deps);
  const service = new E2bService(deps, {
    domain: options.domain,
    onGone: (id) => envd.forget(id),
    ...(options.instanceId === undefined ? {} : { instanceId: options.instanceId }),
  });
  const schemas = e2bSchemas(deps.policy);

  const fail = (res: ServerResponse, error: unknown, meta: E2bRequestMeta) => {
    const mapped = mapError(error);
    if (mapped.studioCode === 'INTERNAL')
      deps.logger.error('e2b request failed', { requestId: meta.requestId, error });
    if (mapped.retryAfterSeconds !== undefined)
      res.setHeader('Retry-After', String(mapped.retryAfterSeconds));
    sendError(res, e2bStatusOf(mapped.studioCode, mapped.trpcCode), mapped.message, mapped.studioCode);
  };

  /** The caller: a Studio API token in `X-API-KEY` (what E2B's SDKs send). */
  const authenticate = async (req: IncomingMessage): Promise<Principal> => {
    const raw = req.headers['x-api-key'];
    const key = Array.isArray(raw) ? raw[0] : raw;
    if (!key) {
      throw new AppError(
        'UNAUTHENTICATED',
        'send a Studio API token as X-API-KEY (E2B_API_KEY): create one in Studio under API tokens',
      );
    }
    const principal = await deps.auth.authenticate(key.trim());
    if (principal.via !== 'api-token') {
      throw new AppError('UNAUTHENTICATED', 'X-API-KEY must be a Studio API token (sst_…), not a sign-in');
    }
    return principal;
  };

  const sandboxIdOf = (raw: string): string => parse(e2bSandboxIdSchema, raw, 'sandbox id');

  const control = async (
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    meta: E2bRequestMeta,
  ): Promise<void> => {
    const principal = await authenticate(req);
    const audit: AuditContext = { actorId: principal.userId, ip: meta.ip, requestId: meta.requestId };
    const method = req.method ?? 'GET';
    // Every change is in the audit log as the API token's too (E2B calls are always an API-token actor).
    const audited = (action: string, sandboxId: string) => service.audit(principal, audit, action, sandboxId);
    const query = new URL(req.url ?? '/', 'http://x').searchParams;

    if (path === '/sandboxes' || path === '/v2/sandboxes') {
      if (method === 'POST') {
        const body = parse(schemas.newSandbox, await readJson(req), 'sandbox');
        const view = await service.create(principal, body, audit);
        await audited('create', view.sandboxID);
        return sendJson(res, 201, view);
      }
      if (method === 'GET') {
        const raw = Object.fromEntries(query);
        // The deprecated list answers running sandboxes only, unpaged.
        const legacy = path === '/sandboxes';
        const input = parse(schemas.list, legacy ? { ...raw, state: 'running' } : raw, 'list');
        const { items, next } = await service.list(principal, legacy ? { ...input, limit: 100 } : input);
        return sendJson(res, 200, items, next === undefined || legacy ? {} : { 'X-Next-Token': next });
      }
    }
    const m = /^\/(?:v2\/)?sandboxes\/([^/]+)(?:\/([a-z]+))?$/.exec(path);
    if (m) {
      const sandboxId = sandboxIdOf(decodeURIComponent(m[1] as string));
      const action = m[2];
      const v2 = path.startsWith('/v2/');
      if (action === undefined && !v2 && method === 'GET') {
        return sendJson(res, 200, await service.get(principal, sandboxId, audit));
      }
      if (action === undefined && !v2 && method === 'DELETE') {
        await service.kill(principal, sandboxId, audit);
        await audited('kill', sandboxId);
        res.statusCode = 204;
        res.end();
        return;
      }
      if (action === 'timeout' && !v2 && method === 'POST') {
        const body = parse(schemas.setTimeout, await readJson(req), 'timeout');
        await service.setTimeout(principal, sandboxId, body.timeout, audit);
        await audited('timeout', sandboxId);
        res.statusCode = 204;
        res.end();
        return;
      }
      if (action === 'pause' && !v2 && method === 'POST') {
        parse(schemas.pause, await readJson(req), 'pause');
        const paused = await service.pause(principal, sandboxId, audit);
        if (!paused) return sendError(res, 409, `sandbox ${sandboxId} is already paused`, 'INVALID_STATE');
        await audited('pause', sandboxId);
        res.statusCode = 204;
        res.end();
        return;
      }
      if (action === 'resume' && !v2 && method === 'POST') {
        const body = parse(schemas.resume, await readJson(req), 'resume');
        const { view, resumed } = await service.connect(principal, sandboxId, body.timeout, audit);
        if (!resumed) return sendError(res, 409, `sandbox ${sandboxId} is already running`, 'INVALID_STATE');
        await audited('resume', sandboxId);
        return sendJson(res, 201, view);
      }
      if (action === 'connect' && method === 'POST') {
        const body = parse(schemas.connect, await readJson(req), 'connect');
        if (body.memory === false) {
          throw new AppError(
            'INPUT_INVALID',
            'a cold reboot on resume (onResume: reboot) is not offered: Studio restores memory where the backend can',
          );
        }
        const { view, resumed } = await service.connect(principal, sandboxId, body.timeout, audit);
        await audited('connect', sandboxId);
        return sendJson(res, resumed ? 201 : 200, view);
      }
    }
    sendError(
      res,
      404,
      `Studio does not serve ${method} ${path} of the E2B API; see docs/e2b.md for what is supported`,
      'NOT_FOUND',
    );
  };

  const serveEnvd = async (
    req: IncomingMessage,
    res: ServerResponse,
    sandboxId: string,
    path: string,
    meta: E2bRequestMeta,
  ) => {
    if (path === '/health') {
      // As E2B's proxy: a sandbox that is not running answers 502, which the SDK's isRunning() reads as false.
      const running = await service.isRunning(sandboxId);
      res.statusCode = running ? 204 : 502;
      if (running) res.end();
      else {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ code: 502, message: `sandbox ${sandboxId} is not running` }));
      }
      return;
    }
    let target: Awaited<ReturnType<E2bService['envdTarget']>>;
    try {
      target = await service.envdTarget(sandboxId);
    } catch (error) {
      if (path === '/files') throw error;
      // An RPC: the refusal in Connect's error format, which the SDK maps to its error classes.
      const failure = toEnvdFailure(error);
      res.statusCode = failure.status;
      res.setHeader('Content-Type', 'application/json');
      const code = Code[failure.code].replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
      res.end(JSON.stringify({ code, message: failure.message }));
      return;
    }
    await envd.handle(req, res, path, { ...target, ip: meta.ip, requestId: meta.requestId });
  };

  return {
    service,
    envd,
    async handle(req, res, path, meta) {
      try {
        const rest = path.slice(E2B_PATH.length) || '/';
        if (rest === '/envd' || rest.startsWith('/envd/')) {
          const header = req.headers['e2b-sandbox-id'];
          const raw = Array.isArray(header) ? header[0] : header;
          if (!raw) {
            throw new AppError(
              'INPUT_INVALID',
              'envd requests under /e2b/envd name their sandbox in the E2b-Sandbox-Id header (E2B SDKs send it when E2B_SANDBOX_URL is set)',
            );
          }
          return await serveEnvd(req, res, sandboxIdOf(raw), rest.slice('/envd'.length) || '/', meta);
        }
        return await control(req, res, rest, meta);
      } catch (error) {
        fail(res, error, meta);
      }
    },
    async handleRootFiles(req, res, meta) {
      try {
        const query = new URL(req.url ?? '/', 'http://x').searchParams;
        const signature = query.get('signature');
        const header = req.headers['e2b-sandbox-id'];
        const named = Array.isArray(header) ? header[0] : header;
        if (named) return await serveEnvd(req, res, sandboxIdOf(named), '/files', meta);
        if (!signature) {
          throw new AppError(
            'NOT_FOUND',
            'no route /files: file URLs carry a signature (sandbox.downloadUrl)',
          );
        }
        const operation = req.method === 'GET' ? 'read' : 'write';
        const sandboxId = await service.findSigned((accessToken) =>
          fileSignatureMatches(query, operation, accessToken),
        );
        if (sandboxId === undefined) {
          throw new AppError(
            'UNAUTHENTICATED',
            'the signature is not valid for any sandbox; ask for a new URL',
          );
        }
        await serveEnvd(req, res, sandboxId, '/files', meta);
      } catch (error) {
        fail(res, error, meta);
      }
    },
    async handleEnvdHost(req, res, sandboxId, path, meta) {
      try {
        await serveEnvd(req, res, sandboxIdOf(sandboxId), path, meta);
      } catch (error) {
        fail(res, error, meta);
      }
    },
    close() {
      service.close();
      envd.close();
    },
  };
}
