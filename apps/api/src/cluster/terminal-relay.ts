import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import type { AppDeps } from '../core/context.ts';
import { AppError } from '../core/errors.ts';
import { CLOSE, refusedUpgrade, startHeartbeat, TERMINAL_PATH } from '../terminal/terminal.ts';
import type { Forwarder } from './forwarder.ts';
import type { ForwardedClient } from './node-guard.ts';

/** Options for {@link attachTerminalRelay}. */
export interface TerminalRelayOptions {
  /** While true (the replica drains), new terminals are refused with 503 before the upgrade. */
  draining?: () => boolean;
  /** The client of an upgrade request, as the replica's other requests see it (X-Forwarded-For when trusted). */
  clientOf: (req: IncomingMessage) => ForwardedClient;
}

/** Close codes a peer may not send (1005, 1006: "none", "abnormal"): sent on as "going away, reconnect". */
function sendableCode(code: number): number {
  return code === 1005 || code === 1006 || code < 1000 || code >= 5000 ? CLOSE.GOING_AWAY : code;
}

/** A close reason within the 123 bytes a close frame carries. */
function reasonOf(reason: string | Buffer): string {
  const text = typeof reason === 'string' ? reason : reason.toString('utf8');
  return Buffer.byteLength(text) <= 123 ? text : Buffer.from(text).subarray(0, 120).toString('utf8');
}

/**
 * An API replica's terminal endpoint (issue 23): the same `/terminal` WebSocket as single-box Studio, relayed to
 * the node that runs the session. The replica checks the origin, waits for the first message (which names the
 * session), and opens the node's terminal with its signature; from then on it passes frames both ways untouched,
 * so authentication, limits, reattach and replay are the node's, exactly as on one box. A replica that goes away
 * closes its sockets with 1001 and the client reconnects through another one to the same shell.
 */
export function attachTerminalRelay(
  server: Server,
  deps: AppDeps,
  forwarder: Forwarder,
  options: TerminalRelayOptions,
): { readonly open: number; close(): void } {
  const limits = deps.policy.websocket;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxMessageBytes,
    clientTracking: true,
  });
  const alive = new WeakSet<WebSocket>();
  const heartbeat = startHeartbeat(wss, alive, limits.heartbeatMs);

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if ((req.url ?? '/').split('?')[0] !== TERMINAL_PATH) return;
    if (refusedUpgrade(req, socket, deps, options.draining)) return;
    wss.handleUpgrade(req, socket, head, (client) => relay(client, req));
  });

  function relay(client: WebSocket, req: IncomingMessage): void {
    alive.add(client);
    client.on('pong', () => alive.add(client));
    const pending: { data: RawData; binary: boolean }[] = [];
    let upstream: WebSocket | undefined;
    const timer = setTimeout(
      () => client.close(CLOSE.POLICY, 'authenticate within the time allowed'),
      limits.authTimeoutMs,
    );
    const refuse = (code: number, reason: string) => {
      clearTimeout(timer);
      if (client.readyState === WebSocket.OPEN) client.close(code, reasonOf(reason));
    };

    const open = async (first: RawData) => {
      let sessionId: unknown;
      try {
        sessionId = (JSON.parse(first.toString()) as { sessionId?: unknown }).sessionId;
      } catch {
        // answered below
      }
      if (typeof sessionId !== 'string') {
        return refuse(CLOSE.POLICY, 'the first message must be { type: "auth", token, sessionId }');
      }
      const node = await forwarder.nodeForSession(sessionId).catch((error: unknown) => error as Error);
      if (node === undefined) return refuse(CLOSE.POLICY, 'not found: no such session');
      if (node instanceof AppError || node instanceof Error) {
        return refuse(
          CLOSE.SERVER,
          node instanceof AppError ? node.message : 'the store is unavailable; reconnect',
        );
      }
      if (client.readyState !== WebSocket.OPEN) return;
      // The node sees the request as the client sent it (Host, Origin), with the replica's signature.
      const headers: Record<string, string> = forwarder.signedHeaders(
        'GET',
        TERMINAL_PATH,
        null,
        options.clientOf(req),
      );
      if (req.headers.host) headers.host = req.headers.host;
      if (req.headers.origin) headers.origin = req.headers.origin;
      const up = new WebSocket(`${node.url.replace(/^http/, 'ws')}${TERMINAL_PATH}`, {
        headers,
        maxPayload: limits.maxMessageBytes,
      });
      upstream = up;
      up.on('open', () => {
        clearTimeout(timer);
        up.send(first, { binary: false });
        for (const m of pending.splice(0)) up.send(m.data, { binary: m.binary });
      });
      up.on('message', (data, binary) => {
        if (client.readyState === WebSocket.OPEN) client.send(data, { binary });
      });
      up.on('close', (code, reason) => refuse(sendableCode(code), reasonOf(reason)));
      up.on('unexpected-response', (_r, res) =>
        refuse(
          CLOSE.SERVER,
          `the node running this session refused the terminal (${res.statusCode}); reconnect`,
        ),
      );
      up.on('error', () => refuse(CLOSE.SERVER, 'the node running this session did not answer; reconnect'));
    };

    let first = true;
    client.on('message', (data, binary) => {
      if (first) {
        first = false;
        void open(data);
        return;
      }
      if (upstream?.readyState === WebSocket.OPEN) upstream.send(data, { binary });
      else pending.push({ data, binary });
    });
    client.on('close', (code, reason) => {
      clearTimeout(timer);
      if (upstream === undefined) return;
      if (upstream.readyState === WebSocket.OPEN) upstream.close(sendableCode(code), reasonOf(reason));
      else upstream.terminate();
    });
  }

  return {
    get open() {
      return wss.clients.size;
    },
    close() {
      clearInterval(heartbeat);
      for (const socket of wss.clients)
        socket.close(CLOSE.GOING_AWAY, 'the server is shutting down; reconnect');
    },
  };
}
