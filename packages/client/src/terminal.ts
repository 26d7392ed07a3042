/** A control message from the terminal endpoint (PTY output arrives as binary frames instead). */
export type TerminalServerMessage =
  | {
      type: 'ready';
      sessionId: string;
      /** The shell's id: reattach to it with `terminalId` (and `offset`) after the socket drops. */
      terminalId: string;
      /** The output offset the server sends from (bytes since the shell started). */
      offset: number;
      /** Bytes between the asked `offset` and `offset` that the server no longer had. */
      missed?: number;
    }
  | {
      type: 'exit';
      exitCode: number | null;
      signal: string | null;
      /** Why the shell ended when the server knows (the session was paused: open the terminal again to resume it). */
      reason?: string;
    }
  | { type: 'dropped'; bytes: number }
  | { type: 'error'; code: string; message: string };

/** The WebSocket shape the helper needs: the browser's, Node 22's global, or the `ws` package's class. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: never) => void): void;
}

/** Options for {@link openTerminal}. */
export interface OpenTerminalOptions {
  /** The API's base URL (`http://…` or `https://…`); the socket goes to `ws(s)://…/terminal`. */
  url: string;
  /** A login JWT or an API token; sent as the first message, never in the URL. */
  token: string;
  sessionId: string;
  /**
   * Reattach to this shell (from a previous terminal's `terminalId`) instead of opening a new one: the server
   * keeps a shell whose socket dropped for 30 s. Another user's, an unknown or an expired id is refused
   * (`error` NOT_FOUND, then close 1008).
   */
  terminalId?: string;
  /**
   * With `terminalId`: the output bytes already had (a previous terminal's `offset`); the server replays what
   * came after from its recent-output buffer. Omitted: it replays all it holds (for a fresh screen).
   */
  offset?: number;
  /** Initial size, sent once the server is ready. */
  cols?: number;
  rows?: number;
  /** The WebSocket class; default the global one (pass `ws`'s in Node 20). */
  WebSocket?: new (
    url: string,
  ) => WebSocketLike;
}

/** A terminal in a session's sandbox. */
export interface StudioTerminal {
  /** Resolves when the server has authenticated the socket and opened the PTY; rejects if it closes first. */
  readonly ready: Promise<void>;
  /** Resolves with the close code and reason (1008: refused; see the API README). */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Input; before the socket opens, up to 60 writes wait and follow authentication (then it throws). */
  write(data: string): void;
  /**
   * Refused by the server (an `error` message) beyond the policy's 500 columns × 200 rows. Before the terminal
   * is ready, only the last size asked for is kept, and sent when it is.
   */
  resize(cols: number, rows: number): void;
  /** PTY output; returns an unsubscribe function. */
  onData(listener: (chunk: Uint8Array) => void): () => void;
  /** Control messages (`ready`, `exit`, `dropped`, `error`); returns an unsubscribe function. */
  onMessage(listener: (message: TerminalServerMessage) => void): () => void;
  close(): void;
  readonly socket: WebSocketLike;
  /** The shell's id once ready (pass it as `terminalId` to reattach). */
  readonly terminalId: string | undefined;
  /** Output bytes received so far, counted from the shell's start (pass it as `offset` to reattach). */
  readonly offset: number;
}

/**
 * Opens a terminal over the API's WebSocket endpoint: authenticates with the first message, then forwards
 * keystrokes and resizes as JSON and PTY output as bytes. After the socket drops, open again with the old
 * terminal's `terminalId` and `offset` to get the same shell back with the output you missed.
 *
 * ```ts
 * const term = openTerminal({ url: 'http://127.0.0.1:4000', token, sessionId, WebSocket });
 * term.onData((b) => process.stdout.write(b));
 * await term.ready;
 * term.write('ls\n');
 * ```
 */
export function openTerminal(options: OpenTerminalOptions): StudioTerminal {
  const Ctor =
    options.WebSocket ?? (globalThis as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket;
  if (!Ctor) throw new Error('no WebSocket class: pass one (e.g. the `ws` package) as options.WebSocket');
  const base = options.url.replace(/\/+$/, '').replace(/^http/, 'ws');
  const socket = new Ctor(`${base}/terminal`);
  socket.binaryType = 'arraybuffer';
  const dataListeners = new Set<(chunk: Uint8Array) => void>();
  const messageListeners = new Set<(message: TerminalServerMessage) => void>();
  let markReady: () => void = () => undefined;
  let failReady: (error: Error) => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve;
    failReady = reject;
  });
  ready.catch(() => undefined);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.addEventListener('close', (event: { code: number; reason: string }) => {
      failReady(new Error(`terminal closed (${event.code} ${event.reason})`));
      resolve({ code: event.code, reason: String(event.reason) });
    });
  });
  // Input before the socket opens waits here and follows the auth message (the server holds it until the
  // terminal is ready), bounded like the server's queue. The size is sent once the terminal is ready: the
  // latest one asked for, from the options or from resize() before then.
  let opened = false;
  let terminalId: string | undefined;
  let offset = 0;
  let isReady = false;
  let early: string[] = [];
  let size =
    options.cols !== undefined && options.rows !== undefined
      ? { cols: options.cols, rows: options.rows }
      : undefined;
  const sendSize = () => {
    if (size) socket.send(JSON.stringify({ type: 'resize', ...size }));
  };
  socket.addEventListener('open', () => {
    socket.send(
      JSON.stringify({
        type: 'auth',
        token: options.token,
        sessionId: options.sessionId,
        ...(options.terminalId !== undefined ? { terminalId: options.terminalId } : {}),
        ...(options.terminalId !== undefined && options.offset !== undefined
          ? { offset: options.offset }
          : {}),
      }),
    );
    opened = true;
    for (const m of early) socket.send(m);
    early = [];
  });
  socket.addEventListener('message', (event: { data: unknown }) => {
    if (typeof event.data === 'string') {
      let message: TerminalServerMessage;
      try {
        message = JSON.parse(event.data) as TerminalServerMessage;
      } catch {
        return;
      }
      if (message.type === 'ready') {
        terminalId = message.terminalId;
        offset = message.offset;
        isReady = true;
        sendSize();
        markReady();
      }
      if (message.type === 'dropped') offset += message.bytes;
      for (const l of messageListeners) l(message);
      return;
    }
    const chunk =
      event.data instanceof ArrayBuffer
        ? new Uint8Array(event.data)
        : ArrayBuffer.isView(event.data)
          ? new Uint8Array(event.data.buffer, event.data.byteOffset, event.data.byteLength)
          : undefined;
    if (!chunk) return;
    offset += chunk.byteLength;
    for (const l of dataListeners) l(chunk);
  });
  return {
    ready,
    closed,
    socket,
    get terminalId() {
      return terminalId;
    },
    get offset() {
      return offset;
    },
    write(data) {
      const message = JSON.stringify({ type: 'input', data });
      if (opened) socket.send(message);
      else if (early.length < 60) early.push(message);
      else throw new Error('the terminal is not open yet: await terminal.ready before writing more');
    },
    resize(cols, rows) {
      size = { cols, rows };
      if (isReady) sendSize();
    },
    onData(listener) {
      dataListeners.add(listener);
      return () => dataListeners.delete(listener);
    },
    onMessage(listener) {
      messageListeners.add(listener);
      return () => messageListeners.delete(listener);
    },
    close() {
      socket.close(1000, 'bye');
    },
  };
}
