import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Terminal } from '@studio/isolation';
import { createRateLimiter, type RateLimiter, sessionIdSchema } from '@studio/policy';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import type { AppDeps } from '../core/context.ts';
import { AppError, mapError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { actorOf } from '../realtime/event-bus.ts';
import { assertMayMutate } from '../sessions/control.ts';

/** Where the terminal WebSocket is served. */
export const TERMINAL_PATH = '/terminal';

/** Close codes of the terminal socket. */
export const CLOSE = {
  /** Policy violation: no/late/bad auth, foreign origin, not your session, rate limit, malformed protocol. */
  POLICY: 1008,
  /** A frame over `websocket.maxMessageBytes` (sent by `ws` itself). */
  TOO_BIG: 1009,
  /** The shell exited. */
  NORMAL: 1000,
  /** The server failed to open the terminal. */
  SERVER: 1011,
  /** The server is shutting down (its drain ended): reconnect, to another instance or this one restarted. */
  GOING_AWAY: 1001,
} as const;

/** Above this many bytes queued for a client, PTY output is dropped (a `dropped` message says how much). */
export const TERMINAL_HIGH_WATER_BYTES = 1024 * 1024;

const PENDING_MAX = 64;

/** Options for {@link attachTerminal}. */
export interface TerminalServerOptions {
  /** Messages per session across all its sockets; default the policy's `websocket.messagesPerMinute`. */
  limiter?: RateLimiter;
  /** Called with the size of PTY output dropped for a slow client (metrics). */
  onDropped?: (bytes: number) => void;
  /**
   * How often an open terminal re-checks the credential it opened with (ms, default 15 s): a sign-in that ends
   * or expires, a revoked API token or a disabled user closes the socket with 1008.
   */
  recheckMs?: number;
  /** While true (the server drains), new terminals are refused with 503 and Retry-After before the upgrade. */
  draining?: () => boolean;
}

function originOk(req: IncomingMessage, deps: AppDeps): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  const host = req.headers.host;
  return (
    (host !== undefined && (origin === `http://${host}` || origin === `https://${host}`)) ||
    deps.origins.includes(origin)
  );
}

/**
 * The terminal endpoint: WebSocket upgrades on {@link TERMINAL_PATH} of the API's server (SECURITY.md §4, §5).
 * A foreign `Origin` is refused before the upgrade (403). The first message must be
 * `{ type: 'auth', token, sessionId }` within `websocket.authTimeoutMs`; nothing is opened in the sandbox before
 * it succeeds. Returns the number of open sockets and a function that closes every one (1001, going away).
 */
export function attachTerminal(
  server: Server,
  deps: AppDeps,
  options: TerminalServerOptions = {},
): { readonly open: number; close(): void } {
  const ws = deps.policy.websocket;
  const limiter = options.limiter ?? createRateLimiter({ limit: ws.messagesPerMinute, windowMs: 60_000 });
  const authSchema = deps.schemas.terminalAuthMessage.extend({ sessionId: sessionIdSchema });
  const wss = new WebSocketServer({ noServer: true, maxPayload: ws.maxMessageBytes, clientTracking: true });
  const alive = new WeakSet<WebSocket>();

  const heartbeat = setInterval(() => {
    for (const socket of wss.clients) {
      if (!alive.has(socket)) {
        socket.terminate();
        continue;
      }
      alive.delete(socket);
      socket.ping();
    }
  }, ws.heartbeatMs);
  heartbeat.unref();

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== TERMINAL_PATH) return;
    if (!originOk(req, deps)) {
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    if (options.draining?.()) {
      socket.end(
        'HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nConnection: close\r\nContent-Length: 0\r\n\r\n',
      );
      return;
    }
    wss.handleUpgrade(req, socket, head, (client) => serve(client));
  };
  server.on('upgrade', onUpgrade);

  function serve(socket: WebSocket): void {
    alive.add(socket);
    socket.on('pong', () => alive.add(socket));
    let state: 'auth' | 'opening' | 'open' | 'closed' = 'auth';
    let terminal: Terminal | undefined;
    let recheck: NodeJS.Timeout | undefined;
    let sessionId = '';
    const pending: RawData[] = [];
    let dropped = 0;
    const refuse = (reason: string) => {
      if (state === 'closed') return;
      state = 'closed';
      socket.close(CLOSE.POLICY, reason);
    };
    const timer = setTimeout(() => refuse('authenticate within the time limit'), ws.authTimeoutMs);
    const sendJson = (message: unknown) => {
      if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message));
    };

    const handle = (raw: RawData, isBinary: boolean) => {
      if (isBinary) return refuse('send JSON text messages');
      if (!limiter.take(sessionId).allowed) return refuse('rate limit: too many messages for this session');
      let message: unknown;
      try {
        message = JSON.parse(raw.toString());
      } catch {
        return sendJson({ type: 'error', code: 'INPUT_INVALID', message: 'messages are JSON' });
      }
      const parsed = deps.schemas.terminalClientMessage.safeParse(message);
      if (!parsed.success || parsed.data.type === 'auth') {
        const resize = (message as { type?: unknown }).type === 'resize';
        return sendJson({
          type: 'error',
          code: resize ? 'LIMIT_EXCEEDED' : 'INPUT_INVALID',
          message: resize
            ? `resize to 1..${deps.policy.terminal.maxCols} columns and 1..${deps.policy.terminal.maxRows} rows`
            : 'send { type: "input", data } or { type: "resize", cols, rows }',
        });
      }
      if (parsed.data.type === 'input') terminal?.write(parsed.data.data);
      else terminal?.resize(parsed.data.cols, parsed.data.rows);
    };

    const authenticate = async (raw: RawData, isBinary: boolean) => {
      let message: unknown;
      try {
        message = isBinary ? undefined : JSON.parse(raw.toString());
      } catch {
        message = undefined;
      }
      const parsed = authSchema.safeParse(message);
      if (!parsed.success) return refuse('the first message must be { type: "auth", token, sessionId }');
      state = 'opening';
      let principal: Awaited<ReturnType<AppDeps['auth']['authenticate']>>;
      try {
        principal = await deps.auth.authenticate(parsed.data.token);
        sessionId = parsed.data.sessionId;
        // A terminal is input into the sandbox: refused to API tokens while a person holds control.
        await assertMayMutate(deps.store, principal, sessionId);
        terminal = await deps.sessions.withSandbox(
          principal.userId,
          sessionId,
          { actorId: principal.userId, ip: null, requestId: null },
          (sandbox) => sandbox.openTerminal({ cols: 80, rows: 24 }),
        );
      } catch (error) {
        if (error instanceof AppError && error.code === 'HUMAN_HAS_CONTROL') {
          sendJson({ type: 'error', code: error.code, message: error.message });
          return refuse('HUMAN_HAS_CONTROL: a person has taken control; wait for control.released and retry');
        }
        deps.logger.info('terminal refused', { error: error instanceof Error ? error.message : 'error' });
        return refuse('authentication failed or the session is not yours or not running');
      }
      clearTimeout(timer);
      if (state !== 'opening') {
        void terminal.close().catch(() => undefined);
        return;
      }
      state = 'open';
      const credential = parsed.data.token;
      recheck = setInterval(() => {
        deps.auth.recheck(principal, credential).catch((error: unknown) => {
          const code = mapError(error).studioCode;
          sendJson({
            type: 'error',
            code,
            message: 'your sign-in or token ended; sign in again and reconnect',
          });
          refuse(`${code}: the credential this terminal opened with is no longer valid`);
        });
      }, options.recheckMs ?? 15_000);
      recheck.unref();
      const actor = actorOf(principal);
      const watcherId = newId('wat_');
      deps.events.publish(sessionId, actor, { type: 'watcher.joined', watcherId, via: 'terminal' });
      terminal.onData((chunk) => {
        if (socket.readyState !== socket.OPEN) return;
        // Backpressure: the PTY is push-only, so past the high-water mark output is dropped, not queued.
        if (socket.bufferedAmount > TERMINAL_HIGH_WATER_BYTES) {
          dropped += chunk.byteLength;
          options.onDropped?.(chunk.byteLength);
          return;
        }
        if (dropped > 0) {
          sendJson({ type: 'dropped', bytes: dropped });
          dropped = 0;
        }
        socket.send(chunk, { binary: true });
      });
      void terminal.exited.then((exit) => {
        sendJson({ type: 'exit', exitCode: exit.exitCode, signal: exit.signal });
        if (state === 'open') {
          state = 'closed';
          socket.close(CLOSE.NORMAL, 'the shell exited');
        }
      });
      socket.once('close', () => {
        deps.events.publish(sessionId, actor, { type: 'watcher.left', watcherId, via: 'terminal' });
      });
      sendJson({ type: 'ready', sessionId });
      for (const m of pending.splice(0)) handle(m, false);
    };

    socket.on('message', (raw, isBinary) => {
      if (state === 'closed') return;
      if (state === 'auth') {
        void authenticate(raw, isBinary);
        return;
      }
      if (state === 'opening') {
        // Held (never forwarded) until auth succeeds; bounded.
        if (pending.length >= PENDING_MAX) return refuse('wait for the ready message');
        if (isBinary) return refuse('send JSON text messages');
        pending.push(raw);
        return;
      }
      handle(raw, isBinary);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      clearInterval(recheck);
      state = 'closed';
      pending.length = 0;
      void terminal?.close().catch(() => undefined);
    });
    socket.on('error', () => socket.terminate());
  }

  return {
    get open() {
      return wss.clients.size;
    },
    close() {
      clearInterval(heartbeat);
      server.off('upgrade', onUpgrade);
      for (const socket of wss.clients)
        socket.close(CLOSE.GOING_AWAY, 'the server is shutting down; reconnect');
      wss.close();
    },
  };
}
