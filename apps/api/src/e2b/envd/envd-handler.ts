import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  Code,
  ConnectError,
  createConnectRouter,
  createContextValues,
  type Interceptor,
} from '@connectrpc/connect';
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from '@connectrpc/connect-node';
import type { Principal } from '../../auth/auth.ts';
import type { AppDeps } from '../../core/context.ts';
import { tokenMatches } from './envd-auth.ts';
import { type EnvdCall, envdCallKey } from './envd-context.ts';
import { toEnvdFailure } from './envd-errors.ts';
import { auditOf, sendError, serveFiles } from './files-http.ts';
import { filesystemService, SessionWatches } from './filesystem-service.ts';
import { Filesystem } from './gen/filesystem/filesystem_pb.ts';
import { Process } from './gen/process/process_pb.ts';
import { processService } from './process-service.ts';
import { ProcessTable } from './process-table.ts';

/** The sandbox an envd request is for, resolved and authorized by the caller (the E2B routing layer). */
export interface EnvdTarget {
  /** Studio session id (ses_…). */
  sessionId: string;
  /** The E2B sandbox id (32 lower-case hex), for messages. */
  sandboxId: string;
  /** The API-token principal E2B calls act as (events, audit, take-over lock). */
  principal: Principal;
  /** The sandbox's envd access token: every request but /health must carry it (or a signed /files URL). */
  accessToken: string;
  /** Env vars given at sandbox create; every process gets them, under its own. */
  envs: Record<string, string>;
  ip: string | null;
  requestId: string | null;
}

/** Serves E2B's envd API (the in-sandbox daemon's) for Studio sessions. */
export interface EnvdHandler {
  /**
   * Serves one envd request. `path` is relative to the envd root: `/process.Process/Start`,
   * `/filesystem.Filesystem/Stat`, `/files`, `/health`. The caller already resolved which sandbox (by the
   * E2b-Sandbox-Id header or the host name) and that it belongs to `target.principal.userId`; this checks the
   * sandbox's access token (`/health` is open).
   */
  handle(req: IncomingMessage, res: ServerResponse, path: string, target: EnvdTarget): Promise<void>;
  /** Ends the session's E2B processes and watches (the sandbox was killed or paused). */
  forget(sessionId: string): void;
  close(): void;
}

/** Options for {@link createEnvdHandler}. */
export interface EnvdHandlerOptions {
  /** Processes one session may run through envd at once (default 64); more are refused with ResourceExhausted. */
  maxProcessesPerSession?: number;
  /** Directory watches (streamed and polled) per session (default 16). */
  maxWatchesPerSession?: number;
  /** Keep-alive interval of streams whose client asks for none (ms, default 30 s). */
  keepAliveMs?: number;
}

/** The envd version whose SDK behaviour this handler serves (see README). */
export const ENVD_VERSION = '0.5.7';

/**
 * Studio's envd: Connect RPC (`process.Process`, `filesystem.Filesystem`; JSON and binary, unary and streaming,
 * served by @connectrpc/connect-node) plus `/files` and `/health`, each on the session's sandbox through the
 * SessionManager. E2B processes and watches live in this handler, per session, until they end or
 * {@link EnvdHandler.forget} ends them.
 */
export function createEnvdHandler(deps: AppDeps, options: EnvdHandlerOptions = {}): EnvdHandler {
  const maxProcesses = options.maxProcessesPerSession ?? 64;
  const maxWatches = options.maxWatchesPerSession ?? 16;
  const keepAliveMs = options.keepAliveMs ?? 30_000;
  const sessions = new Map<string, { processes: ProcessTable; watches: SessionWatches }>();
  const stateOf = (sessionId: string) => {
    let state = sessions.get(sessionId);
    if (!state) {
      state = { processes: new ProcessTable(maxProcesses), watches: new SessionWatches(maxWatches) };
      sessions.set(sessionId, state);
    }
    return state;
  };
  const shutdown = new AbortController();

  // Authentication and error mapping around every RPC, so that each protocol (Connect JSON or binary, unary or
  // streaming) encodes the refusal itself.
  const guard: Interceptor = (next) => async (req) => {
    const call = req.contextValues.get(envdCallKey);
    if (!call || !tokenMatches(req.header.get('x-access-token'), call.target.accessToken)) {
      throw new ConnectError('send the sandbox access token in X-Access-Token', Code.Unauthenticated);
    }
    const mapped = (error: unknown) => {
      const failure = toEnvdFailure(error);
      if (failure.hidden) {
        deps.logger.warn('envd call failed', {
          sessionId: call.target.sessionId,
          method: req.method.name,
          error,
        });
      }
      return error instanceof ConnectError ? error : new ConnectError(failure.message, failure.code);
    };
    try {
      const res = await next(req);
      if (!res.stream) return res;
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* messages;
          } catch (error) {
            throw mapped(error);
          }
        })(),
      };
    } catch (error) {
      throw mapped(error);
    }
  };

  const router = createConnectRouter({
    interceptors: [guard],
    shutdownSignal: shutdown.signal,
    // One input message (SendInput) holds at most what stdin may queue.
    readMaxBytes: Math.max(1024 * 1024, deps.policy.exec.maxStdinBytes + 64 * 1024),
  });
  router.service(Process, processService({ deps, table: (id) => stateOf(id).processes, keepAliveMs }));
  router.service(Filesystem, filesystemService({ deps, watches: (id) => stateOf(id).watches, keepAliveMs }));
  const handlers = new Map(router.handlers.map((h) => [h.requestPath, h]));

  return {
    async handle(req, res, path, target) {
      if (path === '/health') {
        res.writeHead(204).end();
        return;
      }
      if (path === '/files') return serveFiles(deps, req, res, target);
      const handler = handlers.get(path);
      if (!handler) {
        req.resume();
        sendError(res, 404, `envd has no ${path.slice(0, 100)}`);
        return;
      }
      const call: EnvdCall = { target, audit: auditOf(target) };
      try {
        const universal = universalRequestFromNodeRequest(
          req,
          res,
          undefined,
          createContextValues().set(envdCallKey, call),
        );
        await universalResponseToNodeResponse(await handler(universal), res);
      } catch (error) {
        deps.logger.warn('envd response failed', { sessionId: target.sessionId, error });
        if (!res.headersSent) sendError(res, 500, 'internal error');
        else res.destroy();
      }
    },

    forget(sessionId) {
      const state = sessions.get(sessionId);
      if (!state) return;
      sessions.delete(sessionId);
      state.processes.killAll();
      state.watches.closeAll();
    },

    close() {
      shutdown.abort();
      for (const id of [...sessions.keys()]) this.forget(id);
    },
  };
}
