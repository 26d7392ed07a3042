import { randomBytes } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Terminal } from '@studio/isolation';
import { createRateLimiter, type RateLimiter, sessionIdSchema } from '@studio/policy';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { z } from 'zod';
import { assertPasswordSettled, type Principal } from '../auth/auth.ts';
import type { AppDeps } from '../core/context.ts';
import { AppError, mapError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { type Actor, actorOf } from '../realtime/event-bus.ts';
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
  /** Another socket reattached to this terminal (the newest connection wins). */
  REPLACED: 4001,
} as const;

/** Above this many bytes queued for a client, PTY output is dropped (a `dropped` message says how much). */
export const TERMINAL_HIGH_WATER_BYTES = 1024 * 1024;

/** How long a terminal whose socket dropped keeps its shell for a reconnect to reattach (ms). */
export const TERMINAL_REATTACH_MS = 30_000;

/** Recent output a terminal keeps for a reattaching client (bytes). */
export const TERMINAL_REPLAY_BYTES = 128 * 1024;

/** Terminals of one session kept without a socket at once; past it the one detached longest is closed. */
export const TERMINAL_MAX_DETACHED_PER_SESSION = 8;

const PENDING_MAX = 64;

/** What a recorder gets of one terminal: output only (input is keystrokes, passwords typed at prompts among them). */
export interface TerminalRecording {
  output(chunk: Uint8Array): void;
  resize(cols: number, rows: number): void;
  exit(exit: { exitCode: number | null; signal: string | null }): void;
}

/** Opens the recording of a new terminal (undefined: not recorded). */
export type TerminalRecorder = (opened: {
  sessionId: string;
  terminalId: string;
  cols: number;
  rows: number;
  actor: Actor;
}) => TerminalRecording | undefined;

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
  /** Default {@link TERMINAL_REATTACH_MS}. */
  reattachMs?: number;
  /** Default {@link TERMINAL_REPLAY_BYTES}. */
  replayBytes?: number;
  /** Records each new terminal's output, resizes and exit (session recording). */
  recorder?: TerminalRecorder;
  /**
   * A node service's door (issue 23): an upgrade it refuses (not signed by an API replica) is answered 403
   * before anything else is looked at.
   */
  admit?: (req: IncomingMessage) => Promise<boolean>;
}

/** The last `max` bytes of a stream, addressed by their offset in the whole stream. */
class ReplayBuffer {
  readonly #chunks: Uint8Array[] = [];
  #bytes = 0;
  /** Offset of the byte after the newest one (bytes written in all). */
  end = 0;
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  /** Offset of the oldest byte still held. */
  get start(): number {
    return this.end - this.#bytes;
  }
  push(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
    this.#bytes += chunk.byteLength;
    this.end += chunk.byteLength;
    while (this.#bytes > this.#max) {
      const first = this.#chunks[0];
      if (!first) break;
      const over = this.#bytes - this.#max;
      if (first.byteLength <= over) {
        this.#chunks.shift();
        this.#bytes -= first.byteLength;
      } else {
        this.#chunks[0] = first.subarray(over);
        this.#bytes -= over;
      }
    }
  }
  /** The bytes from `offset` (at least `start`) to the end. */
  from(offset: number): Uint8Array[] {
    let skip = Math.max(0, offset - this.start);
    const out: Uint8Array[] = [];
    for (const c of this.#chunks) {
      if (skip >= c.byteLength) {
        skip -= c.byteLength;
        continue;
      }
      out.push(skip > 0 ? c.subarray(skip) : c);
      skip = 0;
    }
    return out;
  }
}

/** A shell that outlives its socket for a while: what a reconnect reattaches to. */
interface LiveTerminal {
  id: string;
  ownerId: string;
  sessionId: string;
  terminal: Terminal;
  replay: ReplayBuffer;
  /** Where output goes now: the attached socket's sender, or undefined while detached. */
  sink: ((chunk: Uint8Array) => void) | undefined;
  /** Ends the attached socket's hold (another socket took over). */
  evict: (() => void) | undefined;
  /** Closes the shell when nobody reattaches in time. */
  expiry: NodeJS.Timeout | undefined;
  detachedAt: number;
  exit: { exitCode: number | null; signal: string | null } | undefined;
  /** Tells the attached socket the shell exited. */
  onExit: (() => void) | undefined;
  recording: TerminalRecording | undefined;
}

/**
 * Pings every socket of `wss` each `everyMs` and ends one that did not answer the last ping (a peer gone without
 * closing); a socket counts as alive while it is in `alive` (add it on connect and on each pong). Returns the timer.
 */
export function startHeartbeat(
  wss: WebSocketServer,
  alive: WeakSet<WebSocket>,
  everyMs: number,
): NodeJS.Timeout {
  const timer = setInterval(() => {
    for (const socket of wss.clients) {
      if (!alive.has(socket)) {
        socket.terminate();
        continue;
      }
      alive.delete(socket);
      socket.ping();
    }
  }, everyMs);
  timer.unref();
  return timer;
}

/** Whether a terminal upgrade's `Origin` is the API's own or one of the allowed origins (none: not a browser). */
export function originOk(req: IncomingMessage, deps: Pick<AppDeps, 'origins'>): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  const host = req.headers.host;
  return (
    (host !== undefined && (origin === `http://${host}` || origin === `https://${host}`)) ||
    deps.origins.includes(origin)
  );
}

/**
 * Answers a terminal upgrade that must not go ahead and says whether it did: a foreign `Origin` (403, see
 * {@link originOk}) or a server draining for shutdown (503 with `Retry-After`). The endpoint and a replica's relay
 * refuse alike through this one check.
 */
export function refusedUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  deps: Pick<AppDeps, 'origins'>,
  draining: (() => boolean) | undefined,
): boolean {
  if (!originOk(req, deps)) {
    socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return true;
  }
  if (draining?.()) {
    socket.end(
      'HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nConnection: close\r\nContent-Length: 0\r\n\r\n',
    );
    return true;
  }
  return false;
}

/**
 * The terminal endpoint: WebSocket upgrades on {@link TERMINAL_PATH} of the API's server (SECURITY.md §4, §5).
 * A foreign `Origin` is refused before the upgrade (403). The first message must be
 * `{ type: 'auth', token, sessionId, terminalId?, offset? }` within `websocket.authTimeoutMs`; nothing is opened
 * in the sandbox before it succeeds. Without `terminalId` it opens a new shell; `ready` names it
 * (`terminalId`). A client closing with 1000 ends the shell; when the socket drops otherwise, the shell lives on
 * for the reattach window (at most 8 such per session): a socket that
 * authenticates as the same user for the same session with that `terminalId` gets the same shell back, with the
 * output it missed after `offset` (bytes of output it had) replayed from a bounded buffer. Another user's
 * terminal id, or an unknown or expired one, is NOT_FOUND. Returns the number of open sockets and a function that closes every socket (1001, going away) and shell.
 */
export function attachTerminal(
  server: Server,
  deps: AppDeps,
  options: TerminalServerOptions = {},
): { readonly open: number; close(): void } {
  const ws = deps.policy.websocket;
  const limiter = options.limiter ?? createRateLimiter({ limit: ws.messagesPerMinute, windowMs: 60_000 });
  const reattachMs = options.reattachMs ?? TERMINAL_REATTACH_MS;
  const replayBytes = options.replayBytes ?? TERMINAL_REPLAY_BYTES;
  const authSchema = deps.schemas.terminalAuthMessage.extend({
    sessionId: sessionIdSchema,
    terminalId: z
      .string()
      .regex(/^trm_[A-Za-z0-9_-]{22}$/)
      .optional(),
    offset: z.int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: ws.maxMessageBytes, clientTracking: true });
  const alive = new WeakSet<WebSocket>();
  const live = new Map<string, LiveTerminal>();

  const closeLive = (t: LiveTerminal) => {
    clearTimeout(t.expiry);
    live.delete(t.id);
    void t.terminal.close().catch(() => undefined);
  };

  // The socket dropped: the shell waits for a reattach, within bounds (time, and count per session).
  const detach = (t: LiveTerminal) => {
    t.sink = undefined;
    t.evict = undefined;
    t.onExit = undefined;
    t.detachedAt = Date.now();
    clearTimeout(t.expiry);
    t.expiry = setTimeout(() => closeLive(t), t.exit ? Math.min(reattachMs, 5_000) : reattachMs);
    t.expiry.unref();
    const detached = [...live.values()].filter((x) => x.sessionId === t.sessionId && x.sink === undefined);
    detached.sort((x, y) => x.detachedAt - y.detachedAt);
    for (const x of detached.slice(0, Math.max(0, detached.length - TERMINAL_MAX_DETACHED_PER_SESSION))) {
      closeLive(x);
    }
  };

  const heartbeat = startHeartbeat(wss, alive, ws.heartbeatMs);

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== TERMINAL_PATH) return;
    if (options.admit) {
      const admit = options.admit;
      socket.pause();
      admit(req).then(
        (ok) => {
          socket.resume();
          if (ok) upgrade(req, socket, head);
          else socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        },
        () => socket.destroy(),
      );
      return;
    }
    upgrade(req, socket, head);
  };
  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (refusedUpgrade(req, socket, deps, options.draining)) return;
    wss.handleUpgrade(req, socket, head, (client) => serve(client));
  };
  server.on('upgrade', onUpgrade);

  function serve(socket: WebSocket): void {
    alive.add(socket);
    socket.on('pong', () => alive.add(socket));
    let state: 'auth' | 'opening' | 'open' | 'closed' = 'auth';
    let current: LiveTerminal | undefined;
    /** Close the shell with the socket (a credential that ended), instead of keeping it to reattach. */
    let killOnClose = false;
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
      if (parsed.data.type === 'input') {
        current?.terminal.write(parsed.data.data);
        if (current) deps.sessions.noteActivity(current.sessionId);
      } else {
        current?.terminal.resize(parsed.data.cols, parsed.data.rows);
        current?.recording?.resize(parsed.data.cols, parsed.data.rows);
      }
    };

    // Sends PTY output to this socket. Backpressure: the PTY is push-only, so past the high-water mark output
    // is dropped, not queued (a reattach with `offset` gets it back while the replay buffer holds it).
    const send = (chunk: Uint8Array) => {
      if (socket.readyState !== socket.OPEN) return;
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
    };

    const open = async (
      principal: Principal,
      parsed: { sessionId: string; terminalId?: string | undefined },
    ): Promise<LiveTerminal> => {
      if (parsed.terminalId !== undefined) {
        const found = live.get(parsed.terminalId);
        // One answer for unknown, expired and another user's (or another session's): ids cannot be probed.
        if (!found || found.ownerId !== principal.userId || found.sessionId !== parsed.sessionId) {
          throw new AppError('NOT_FOUND', `terminal ${parsed.terminalId} is not open (it may have expired)`);
        }
        return found;
      }
      const terminal = await deps.sessions.withSandbox(
        principal.userId,
        parsed.sessionId,
        { actorId: principal.userId, ip: null, requestId: null },
        (sandbox) => sandbox.openTerminal({ cols: 80, rows: 24 }),
      );
      // 128 random bits: the id is only good with its owner's credential, but must not be guessable either.
      const id = `trm_${randomBytes(16).toString('base64url')}`;
      const t: LiveTerminal = {
        id,
        ownerId: principal.userId,
        sessionId: parsed.sessionId,
        terminal,
        replay: new ReplayBuffer(replayBytes),
        sink: undefined,
        evict: undefined,
        expiry: undefined,
        detachedAt: 0,
        exit: undefined,
        onExit: undefined,
        recording: options.recorder?.({
          sessionId: parsed.sessionId,
          terminalId: id,
          cols: 80,
          rows: 24,
          actor: actorOf(principal),
        }),
      };
      live.set(t.id, t);
      terminal.onData((chunk) => {
        t.replay.push(chunk);
        t.recording?.output(chunk);
        t.sink?.(chunk);
      });
      void terminal.exited.then((exit) => {
        t.exit = exit;
        t.recording?.exit(exit);
        if (t.onExit) t.onExit();
        else if (live.get(t.id) === t) detach(t); // keeps the exit for a short while, for a reattach to learn it
      });
      return t;
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
      let principal: Principal;
      let t: LiveTerminal;
      try {
        principal = await deps.auth.authenticate(parsed.data.token);
        assertPasswordSettled(principal);
        sessionId = parsed.data.sessionId;
        // A terminal is input into the sandbox: refused to API tokens while a person holds control.
        await assertMayMutate(deps.store, principal, sessionId);
        t = await open(principal, parsed.data);
      } catch (error) {
        if (error instanceof AppError && error.code === 'PASSWORD_CHANGE_REQUIRED') {
          sendJson({ type: 'error', code: error.code, message: error.message });
          return refuse('PASSWORD_CHANGE_REQUIRED: change your password first (auth.changePassword)');
        }
        if (error instanceof AppError && (error.code === 'HUMAN_HAS_CONTROL' || error.code === 'NOT_FOUND')) {
          if (error.code === 'NOT_FOUND' && parsed.data.terminalId !== undefined) {
            sendJson({ type: 'error', code: error.code, message: error.message });
            return refuse('NOT_FOUND: no such terminal to reattach; open a new one');
          }
          if (error.code === 'HUMAN_HAS_CONTROL') {
            sendJson({ type: 'error', code: error.code, message: error.message });
            return refuse(
              'HUMAN_HAS_CONTROL: a person has taken control; wait for control.released and retry',
            );
          }
        }
        deps.logger.info('terminal refused', { error: error instanceof Error ? error.message : 'error' });
        return refuse('authentication failed or the session is not yours or not running');
      }
      clearTimeout(timer);
      if (state !== 'opening') {
        // This socket closed while the shell opened: a new shell nobody learnt the id of goes; one reattached
        // to stays as it was (detached, on its timer, or attached elsewhere).
        if (parsed.data.terminalId === undefined) closeLive(t);
        return;
      }
      state = 'open';
      // Newest socket wins: the one attached before (often the same client on a dead connection) is let go.
      const previous = t.evict;
      t.evict = undefined;
      previous?.();
      clearTimeout(t.expiry);
      current = t;
      const credential = parsed.data.token;
      recheck = setInterval(() => {
        deps.auth.recheck(principal, credential).catch((error: unknown) => {
          const code = mapError(error).studioCode;
          sendJson({
            type: 'error',
            code,
            message: 'your sign-in or token ended; sign in again and reconnect',
          });
          killOnClose = true;
          refuse(`${code}: the credential this terminal opened with is no longer valid`);
        });
      }, options.recheckMs ?? 15_000);
      recheck.unref();
      const actor = actorOf(principal);
      const watcherId = newId('wat_');
      deps.events.publish(sessionId, actor, { type: 'watcher.joined', watcherId, via: 'terminal' });
      socket.once('close', () => {
        deps.events.publish(sessionId, actor, { type: 'watcher.left', watcherId, via: 'terminal' });
      });
      // What this socket starts from: the client's offset when the buffer still holds it, else the oldest byte
      // held (`missed` says how much it lost). A new shell starts at 0.
      const asked = parsed.data.offset ?? t.replay.start;
      const from = Math.min(Math.max(asked, t.replay.start), t.replay.end);
      sendJson({
        type: 'ready',
        sessionId,
        terminalId: t.id,
        offset: from,
        ...(asked < from ? { missed: from - asked } : {}),
      });
      for (const chunk of t.replay.from(from)) send(chunk);
      t.sink = send;
      t.evict = () => {
        current = undefined;
        if (state === 'open') {
          state = 'closed';
          socket.close(CLOSE.REPLACED, 'another connection reattached to this terminal');
        }
      };
      const onExit = () => {
        const exit = t.exit ?? { exitCode: null, signal: null };
        // A terminal a pause ended says so: the client reconnects, which resumes the session.
        const paused = deps.sessions.isPausing(t.sessionId);
        sendJson({
          type: 'exit',
          exitCode: exit.exitCode,
          signal: exit.signal,
          ...(paused ? { reason: 'the session was paused; open the terminal again to resume it' } : {}),
        });
        closeLive(t);
        if (state === 'open') {
          state = 'closed';
          socket.close(CLOSE.NORMAL, 'the shell exited');
        }
      };
      if (t.exit) return onExit();
      t.onExit = onExit;
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
    socket.on('close', (code) => {
      clearTimeout(timer);
      clearInterval(recheck);
      state = 'closed';
      pending.length = 0;
      const t = current;
      current = undefined;
      // Only the socket the terminal is attached to decides its fate (not one that was replaced).
      if (!t || t.sink !== send) return;
      // A client that closes normally (1000) is done with the shell; any other end (a dropped connection: 1006,
      // a page going away: 1001) keeps it for a reattach.
      if (killOnClose || code === CLOSE.NORMAL || !live.has(t.id)) closeLive(t);
      else detach(t);
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
      for (const t of [...live.values()]) closeLive(t);
    },
  };
}
