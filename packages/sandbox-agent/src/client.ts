import { randomBytes } from 'node:crypto';
import { Duplex, type Readable, type Writable } from 'node:stream';
import type {
  ExecOptions,
  ExecResult,
  FileChanges,
  FileEntry,
  FileStat,
  FileWatch,
  Terminal,
  TerminalOptions,
} from '@studio/isolation';
import { ISOLATION_ERROR_CODES, IsolationError, type IsolationErrorCode } from '@studio/isolation';
import {
  DATA_CHUNK,
  DEFAULT_WINDOW,
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameType,
  MAX_PAYLOAD,
  PROTOCOL_VERSION,
  SYNC_MAGIC,
  syncPreamble,
} from './protocol.ts';

/** Options of {@link AgentClient}. */
export interface AgentClientOptions {
  /** The agent's stdout, already separated from its stderr (e.g. Docker's attach stream demultiplexed). */
  input: Readable;
  /** The agent's stdin. */
  output: Writable;
  /** Limit for calls other than exec and the streams (files, ping, opening a terminal or connection). Default 30 s. */
  requestTimeoutMs?: number;
  /** How many bytes the agent may send per channel before we grant more. Default 256 KiB. */
  window?: number;
  /** Diagnostics the agent reports (it never writes anything but frames to stdout). */
  onLog?: (entry: AgentLogEntry) => void;
}

/** What the agent says about itself in its hello. */
export interface AgentHello {
  agent: string;
  version: string;
  protocol: number;
  pid: number;
  uid: number;
  /** The workspace path as the agent sees it (`/workspace` in a sandbox). */
  workspace: string;
  /** st_dev of the workspace; null when the agent could not open it (see `workspaceError`). */
  workspaceDev: number | null;
  workspaceError: string | null;
  /** The agent's receive window per channel. */
  window: number;
  maxFrame: number;
  /** Whether terminals can be opened. */
  terminal: boolean;
  /** Whether the agent serves `listen` (TCP streams opened from inside). */
  streams: boolean;
}

export interface AgentLogEntry {
  level: string;
  message: string;
}

type Json = Record<string, unknown>;

const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
const DEFAULT_READ_MAX = 64 * 1024 * 1024;
const DEFAULT_LIST_MAX = 10_000;
const READ_WINDOW = 1024 * 1024;
/** Output backlog above which data senders wait for the transport to drain. */
const OUTPUT_HIGH_WATER = 1024 * 1024;
/** Terminal input queued while the agent has not granted credit; more is refused. */
const MAX_TERMINAL_BACKLOG = 1024 * 1024;
/** How long a cancelled exec or closed terminal waits for the agent to confirm before giving up. */
const CONFIRM_MS = 5_000;
/** Extra time an exec gets past its own timeout before the client stops waiting for the agent. */
const EXEC_GRACE_MS = 30_000;

/** Streams accepted from `listen` sockets held open at once; the agent's further connections are refused. */
const MAX_ACCEPTED = 256;

/** The longest watch batch line accepted from the agent (256 paths of at most 4096 bytes, and JSON). */
const MAX_WATCH_LINE = 2 * 1024 * 1024;
/**
 * Watch batches handed on per second at most. The agent sends one batch per 100 ms (10/s); past this rate it is
 * flooding, and the rest of that second is collapsed into one `overflow` batch (the reader rescans), so a hostile
 * agent cannot drive the API's event fan-out at wire speed.
 */
const MAX_WATCH_BATCHES_PER_S = 50;

/** A watch batch line, or undefined when it is not one (the agent is sandbox code: trust no shape). */
/**
 * Whether a path the agent reports names something inside the workspace: relative, no `.`/`..` segment, no empty
 * segment, no NUL, bounded. The agent runs beside sandbox code, so what it says is untrusted input: a path that
 * fails this never reaches the API's events or listings.
 */
function isWorkspacePath(path: string): boolean {
  if (path.length === 0 || path.length > 4096 || path.includes('\0') || path.startsWith('/')) return false;
  return path.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

/** Whether a listing entry's name is one name in its directory (no separator, not `.` or `..`). */
function isEntryName(name: string): boolean {
  return name.length > 0 && name.length <= 255 && !name.includes('/') && isWorkspacePath(name);
}

function parseChanges(line: string): FileChanges | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { changes, overflow } = value as { changes?: unknown; overflow?: unknown };
  if (!Array.isArray(changes) || changes.length > 256) return undefined;
  const out: FileChanges['changes'] = [];
  for (const c of changes as unknown[]) {
    const { path, kind } = (c ?? {}) as { path?: unknown; kind?: unknown };
    // '' is the workspace root itself (a change to its own entry).
    if (
      typeof path !== 'string' ||
      (path !== '' && !isWorkspacePath(path)) ||
      (kind !== 'rename' && kind !== 'change')
    )
      return undefined;
    out.push({ path, kind });
  }
  return { changes: out, overflow: overflow === true };
}

const DISCONNECTED = "the sandbox's agent disconnected; the sandbox may have stopped or hit a resource limit";

interface Handlers {
  reply?(msg: Json): void;
  data?(chunk: Buffer): void;
  dataErr?(chunk: Buffer): void;
  eof?(): void;
  close?(msg: Json): void;
  /** The connection is gone (or reset): the channel will never hear from the agent again. */
  lost(error: IsolationError): void;
  /** Bytes received and held for a consumer. */
  buffered?(): number;
  /** `listen` only: a connection the agent accepted, carried on a channel of the agent's choosing. */
  accept?(socket: Duplex, peer: string): void;
}

class Channel {
  sendCredit: number;
  recvCredit: number;
  unacked = 0;
  ended = false;
  #waiters: Array<() => void> = [];

  constructor(
    readonly id: number,
    readonly handlers: Handlers,
    sendCredit: number,
    recvWindow: number,
  ) {
    this.sendCredit = sendCredit;
    this.recvCredit = recvWindow;
  }

  /** Resolves when credit arrives or the channel ends. */
  waitCredit(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

/** Bytes of `data` (a view, not a copy, of a Uint8Array: every frame copies what it sends). */
function toBytes(data: string | Uint8Array): Buffer {
  return typeof data === 'string'
    ? Buffer.from(data, 'utf8')
    : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function parseJson(payload: Buffer): Json | undefined {
  try {
    const v: unknown = JSON.parse(payload.toString('utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined;
  } catch {
    return undefined;
  }
}

/** The agent's structured error as an IsolationError (it is sandbox output: only known codes pass). */
function agentError(raw: unknown, fallback = 'the agent reported an error'): IsolationError {
  const e = typeof raw === 'object' && raw !== null ? (raw as Json) : {};
  const code = (ISOLATION_ERROR_CODES as readonly string[]).includes(e.code as string)
    ? (e.code as IsolationErrorCode)
    : 'INTERNAL';
  const message = typeof e.message === 'string' && e.message ? e.message.slice(0, 2000) : fallback;
  const details =
    typeof e.details === 'object' && e.details !== null && !Array.isArray(e.details)
      ? (e.details as Record<string, unknown>)
      : undefined;
  return new IsolationError(code, message, details ? { details } : {});
}

function num(v: unknown, fallback: number): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback;
}

function str(v: unknown, fallback: string): string {
  return typeof v === 'string' ? v : fallback;
}

const ENTRY_TYPES = new Set(['file', 'directory', 'symlink', 'other']);

function toEntry(v: unknown): FileEntry {
  const e = typeof v === 'object' && v !== null ? (v as Json) : {};
  const type = ENTRY_TYPES.has(e.type as string) ? (e.type as FileEntry['type']) : 'other';
  return {
    name: str(e.name, ''),
    type,
    size: num(e.size, 0),
    mtimeMs: num(e.mtimeMs, 0),
    mode: num(e.mode, 0),
  };
}

function invalid(message: string): IsolationError {
  return new IsolationError('INVALID_INPUT', message);
}

function checkInt(v: unknown, min: number, max: number, label: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalid(`${label} must be an integer from ${min} to ${max}`);
  }
  return v;
}

/**
 * Host side of the in-sandbox agent (`guest/`, built to `agent/studio-agent`): exec, terminals, files and TCP
 * connections over one multiplexed stream, the same for every backend. Everything the agent sends is
 * treated as untrusted sandbox output: frame sizes, flow-control credit and output caps are enforced
 * here as well as in the agent, and a connection that breaks the protocol is closed.
 *
 * Calls made before {@link hello} say hello first. When the transport closes, every pending call
 * rejects with `UNAVAILABLE` and {@link closed} resolves.
 */
export class AgentClient {
  /** Resolves once the connection is closed (by {@link close} or because the transport ended). */
  readonly closed: Promise<void>;
  readonly #input: Readable;
  readonly #output: Writable;
  readonly #requestTimeoutMs: number;
  readonly #window: number;
  readonly #onLog: ((entry: AgentLogEntry) => void) | undefined;
  readonly #decoder = new FrameDecoder(MAX_PAYLOAD);
  readonly #channels = new Map<number, Channel>();
  #nextId = 1;
  #closedError: IsolationError | undefined;
  #resolveClosed!: () => void;
  #hello: Promise<AgentHello> | undefined;
  #info: AgentHello | undefined;
  #preambleSent = false;
  #agentWindow = DEFAULT_WINDOW;
  #drain: Promise<void> | undefined;
  #writing = 0;
  #deferred: Array<Buffer | string> = [];

  constructor(options: AgentClientOptions) {
    this.#input = options.input;
    this.#output = options.output;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#window = checkInt(options.window ?? DEFAULT_WINDOW, DATA_CHUNK, 64 * 1024 * 1024, 'window');
    this.#onLog = options.onLog;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    // Nothing is parsed before our first hello's answer: what the stream held before is not ours.
    this.#decoder.expect(Buffer.concat([SYNC_MAGIC, randomBytes(16)]));
    const lost = () => this.#shutdown(new IsolationError('UNAVAILABLE', DISCONNECTED));
    this.#input.on('data', (chunk: Buffer | string) => this.#onInput(chunk));
    this.#input.on('end', lost);
    this.#input.on('close', lost);
    this.#input.on('error', lost);
    this.#output.on('error', lost);
    this.#output.on('close', lost);
  }

  /** True once the connection is closed; a new client (a new attach) is needed to talk again. */
  get isClosed(): boolean {
    return this.#closedError !== undefined;
  }

  /** The agent's last hello, if any. */
  get info(): AgentHello | undefined {
    return this.#info;
  }

  /**
   * Bytes received from the agent and held for a consumer that has not taken them yet (terminal output
   * with no listener, connection data not yet read, an incomplete frame). Bounded by the windows.
   */
  bufferedBytes(): number {
    let total = this.#decoder.bufferedBytes;
    for (const ch of this.#channels.values()) total += ch.handlers.buffered?.() ?? 0;
    return total;
  }

  /**
   * Handshake. It also resets the agent: every process and connection a previous host left there is
   * stopped (and calls still pending on this client fail with `UNAVAILABLE`). The first hello on a
   * stream sends a resynchronisation preamble first, so a stream a previous host left mid-frame is
   * usable again.
   */
  hello(timeoutMs = this.#requestTimeoutMs): Promise<AgentHello> {
    const pending = this.#sayHello(timeoutMs);
    this.#hello = pending;
    pending.catch(() => {
      if (this.#hello === pending) this.#hello = undefined;
    });
    return pending;
  }

  async #sayHello(timeoutMs: number): Promise<AgentHello> {
    this.#assertOpen();
    for (const ch of [...this.#channels.values()]) {
      this.#end(ch);
      ch.handlers.lost(new IsolationError('UNAVAILABLE', 'the agent was reset by a new hello'));
    }
    const nonce = randomBytes(16).toString('hex');
    this.#decoder.expect(Buffer.concat([SYNC_MAGIC, Buffer.from(nonce, 'latin1')]));
    if (!this.#preambleSent) {
      this.#preambleSent = true;
      this.#write(syncPreamble());
    }
    const reply = await this.#request(
      'hello',
      { nonce, protocol: PROTOCOL_VERSION },
      {
        timeoutMs,
        onTimeout: () =>
          new IsolationError(
            'UNAVAILABLE',
            `the sandbox's agent did not answer within ${timeoutMs} ms (is the agent built, by packages/sandbox-agent/scripts/build-agent.sh, and mounted at /opt/studio?)`,
          ),
      },
    );
    const info: AgentHello = {
      agent: str(reply.agent, 'unknown'),
      version: str(reply.version, 'unknown'),
      protocol: num(reply.protocol, 0),
      pid: num(reply.pid, 0),
      uid: num(reply.uid, -1),
      workspace: str(reply.workspace, ''),
      workspaceDev: typeof reply.workspaceDev === 'number' ? reply.workspaceDev : null,
      workspaceError: typeof reply.workspaceError === 'string' ? reply.workspaceError : null,
      window: checkInt(num(reply.window, DEFAULT_WINDOW), 1, 64 * 1024 * 1024, 'agent window'),
      maxFrame: num(reply.maxFrame, MAX_PAYLOAD),
      terminal: reply.terminal === true,
      streams: reply.streams === true,
    };
    if (info.protocol !== PROTOCOL_VERSION) {
      throw new IsolationError(
        'UNSUPPORTED',
        `the sandbox's agent speaks protocol ${info.protocol}, this host ${PROTOCOL_VERSION}: mount the matching agent`,
      );
    }
    this.#agentWindow = info.window;
    this.#info = info;
    return info;
  }

  /** Round trip to the agent; resolves with the time it took in milliseconds. */
  async ping(): Promise<number> {
    await this.#ready();
    const start = performance.now();
    await this.#request('ping', {});
    return performance.now() - start;
  }

  /**
   * Runs `command` (argv, no shell) inside the sandbox. A command that does not exist gives exit code
   * 127 and a message on stderr, as a shell would; a timeout is an outcome (`timedOut`), not an error.
   */
  async exec(command: readonly string[], options: ExecOptions): Promise<ExecResult> {
    if (!Array.isArray(command) || command.length === 0 || command.some((a) => typeof a !== 'string')) {
      throw invalid('exec needs a command: a non-empty array of strings');
    }
    const timeoutMs = Math.ceil(checkNumber(options.timeoutMs, 'timeoutMs'));
    const max = checkInt(options.maxOutputBytes, 0, Number.MAX_SAFE_INTEGER, 'maxOutputBytes');
    if (timeoutMs > 2_147_483_647) throw invalid('timeoutMs is too large');
    await this.#ready();
    const signal = options.signal;
    if (signal?.aborted) throw new IsolationError('CANCELLED', 'exec was cancelled before it started');

    return new Promise<ExecResult>((resolve, reject) => {
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      let total = 0;
      let truncated = false;
      let settled = false;
      let cancelled = false;
      let backstop: NodeJS.Timeout | undefined;

      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(backstop);
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const fail = (error: unknown) => {
        this.#abort(ch);
        settle(() => reject(error));
      };
      const take = (chunk: Buffer, into: Buffer[], listener: ((c: Uint8Array) => void) | undefined) => {
        this.#consumed(ch, chunk.length);
        if (cancelled || settled) return;
        if (total >= max) {
          truncated = true;
          return;
        }
        const part = chunk.length > max - total ? chunk.subarray(0, max - total) : chunk;
        if (part.length < chunk.length) truncated = true;
        total += part.length;
        into.push(part);
        try {
          listener?.(part);
        } catch (error) {
          fail(error);
        }
      };
      const onAbort = () => {
        if (settled || cancelled) return;
        cancelled = true;
        this.#send(FrameType.CLOSE, ch.id);
        clearTimeout(backstop);
        backstop = setTimeout(() => {
          this.#end(ch);
          settle(() => reject(new IsolationError('CANCELLED', 'exec was cancelled')));
        }, CONFIRM_MS);
      };

      const ch = this.#open(
        'exec',
        {
          argv: command,
          cwd: options.cwd,
          env: options.env,
          timeoutMs,
          maxOutputBytes: max,
          stdin: options.stdin !== undefined,
        },
        {
          data: (chunk) => take(chunk, stdout, options.onStdout),
          dataErr: (chunk) => take(chunk, stderr, options.onStderr),
          reply: (msg) => {
            if (cancelled) return settle(() => reject(new IsolationError('CANCELLED', 'exec was cancelled')));
            if (msg.ok !== true) return settle(() => reject(agentError(msg.error)));
            settle(() =>
              resolve({
                exitCode: typeof msg.exitCode === 'number' ? msg.exitCode : null,
                signal: typeof msg.signal === 'string' ? msg.signal : null,
                stdout: Buffer.concat(stdout),
                stderr: Buffer.concat(stderr),
                timedOut: msg.timedOut === true,
                truncated: truncated || msg.truncated === true,
                oomKilled: msg.oomKilled === true,
                durationMs: num(msg.durationMs, 0),
              }),
            );
          },
          lost: (error) => settle(() => reject(error)),
        },
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      // The agent enforces the timeout; this only stops waiting for an agent that never answers.
      backstop = setTimeout(
        () =>
          fail(
            new IsolationError(
              'TIMEOUT',
              `the agent did not finish exec within ${timeoutMs + EXEC_GRACE_MS} ms`,
            ),
          ),
        timeoutMs + EXEC_GRACE_MS,
      );
      if (options.stdin !== undefined) {
        this.#pumpStdin(ch, options.stdin).catch((error: unknown) => {
          if (!ch.ended)
            fail(error instanceof IsolationError ? error : invalid(`exec stdin failed: ${String(error)}`));
        });
      }
    });
  }

  async #pumpStdin(ch: Channel, stdin: string | Uint8Array | AsyncIterable<Uint8Array>): Promise<void> {
    if (typeof stdin === 'string' || stdin instanceof Uint8Array) {
      await this.#sendData(ch, toBytes(stdin));
    } else {
      for await (const chunk of stdin) {
        if (ch.ended) return;
        await this.#sendData(ch, toBytes(chunk));
      }
    }
    if (!ch.ended) this.#send(FrameType.EOF, ch.id);
  }

  /** A PTY in the sandbox running `options.command` (default: a login shell). */
  async openTerminal(options: TerminalOptions): Promise<Terminal> {
    const cols = checkInt(options.cols, 1, 10_000, 'cols');
    const rows = checkInt(options.rows, 1, 10_000, 'rows');
    if (options.command !== undefined && (!Array.isArray(options.command) || options.command.length === 0)) {
      throw invalid('command must be a non-empty array of strings');
    }
    await this.#ready();
    return new Promise<Terminal>((resolve, reject) => {
      let terminal: AgentTerminal | undefined;
      let timer: NodeJS.Timeout | undefined;
      const ch = this.#open(
        'terminal',
        { cols, rows, command: options.command, cwd: options.cwd, env: options.env },
        {
          reply: (msg) => {
            clearTimeout(timer);
            if (msg.ok !== true) {
              this.#end(ch);
              return reject(agentError(msg.error));
            }
            terminal = new AgentTerminal(this.#terminalPort(ch));
            resolve(terminal);
          },
          data: (chunk) => terminal?.deliver(chunk),
          close: (msg) => {
            this.#end(ch);
            terminal?.exit(msg);
          },
          lost: (error) => {
            clearTimeout(timer);
            if (terminal) terminal.exit({});
            else reject(error);
          },
          buffered: () => terminal?.bufferedBytes ?? 0,
        },
      );
      timer = setTimeout(() => {
        this.#abort(ch);
        reject(
          new IsolationError(
            'TIMEOUT',
            `the agent did not open the terminal within ${this.#requestTimeoutMs} ms`,
          ),
        );
      }, this.#requestTimeoutMs);
    });
  }

  #terminalPort(ch: Channel): TerminalPort {
    return {
      channel: ch,
      consumed: (n) => this.#consumed(ch, n),
      send: (bytes) => this.#sendData(ch, bytes),
      resize: (cols, rows) =>
        this.#send(FrameType.CONTROL, ch.id, Buffer.from(JSON.stringify({ resize: { cols, rows } }))),
      close: () => {
        if (!ch.ended) this.#send(FrameType.CLOSE, ch.id);
      },
      forget: () => this.#end(ch),
      log: (message) => this.#onLog?.({ level: 'warn', message }),
    };
  }

  /** Reads a file (workspace-relative path); `RESOURCE_LIMIT` when it is larger than `maxBytes` (default 64 MiB). */
  async readFile(path: string, options: { maxBytes?: number } = {}): Promise<Uint8Array> {
    const max = checkInt(options.maxBytes ?? DEFAULT_READ_MAX, 0, Number.MAX_SAFE_INTEGER, 'maxBytes');
    await this.#ready();
    const parts: Buffer[] = [];
    let total = 0;
    await this.#request(
      'readFile',
      { path: checkPath(path), maxBytes: max },
      {
        window: READ_WINDOW,
        onData: (chunk, ch) => {
          total += chunk.length;
          if (total > max) {
            this.#abort(ch);
            ch.handlers.lost(
              new IsolationError('RESOURCE_LIMIT', `${path}: file is larger than maxBytes (${max})`),
            );
            return;
          }
          parts.push(chunk);
        },
      },
    );
    return Buffer.concat(parts, total);
  }

  /** Writes a file atomically (a temp file in the same directory, then rename). */
  async writeFile(
    path: string,
    data: Uint8Array | string,
    options: { createParents?: boolean; mode?: number } = {},
  ): Promise<void> {
    const bytes = toBytes(data);
    if (options.mode !== undefined) checkInt(options.mode, 0, 0o777, 'mode');
    await this.#ready();
    const { ch, reply } = this.#call('writeFile', {
      path: checkPath(path),
      createParents: options.createParents === true,
      mode: options.mode,
    });
    const upload = this.#sendData(ch, bytes).then(() => {
      if (!ch.ended) this.#send(FrameType.EOF, ch.id);
    });
    // A failure while uploading ends the channel; the reply (or the loss) carries the reason.
    upload.catch(() => undefined);
    await reply;
  }

  async list(path: string, options: { maxEntries?: number } = {}): Promise<FileEntry[]> {
    const max = checkInt(options.maxEntries ?? DEFAULT_LIST_MAX, 0, 100_000, 'maxEntries');
    await this.#ready();
    const parts: Buffer[] = [];
    let total = 0;
    const limit = 1024 * 1024 + max * 2048;
    await this.#request(
      'list',
      { path: checkPath(path), maxEntries: max },
      {
        window: READ_WINDOW,
        onData: (chunk, ch) => {
          total += chunk.length;
          if (total > limit) {
            this.#abort(ch);
            ch.handlers.lost(
              new IsolationError('INTERNAL', 'the agent sent a listing larger than maxEntries allows'),
            );
            return;
          }
          parts.push(chunk);
        },
      },
    );
    let raw: unknown;
    try {
      raw = total === 0 ? [] : JSON.parse(Buffer.concat(parts, total).toString('utf8'));
    } catch {
      throw new IsolationError('INTERNAL', 'the agent sent a malformed listing');
    }
    if (!Array.isArray(raw) || raw.length > max)
      throw new IsolationError('INTERNAL', 'the agent sent a malformed listing');
    const entries = raw.map(toEntry);
    if (entries.some((e) => !isEntryName(e.name))) {
      throw new IsolationError(
        'INTERNAL',
        "the agent sent a listing with a name outside its directory; the sandbox's agent may be compromised",
      );
    }
    return entries;
  }

  /** lstat semantics: a symlink is reported as `symlink`, never followed. */
  async stat(path: string): Promise<FileStat> {
    await this.#ready();
    const reply = await this.#request('stat', { path: checkPath(path) });
    return { path: str(reply.path, path), ...toEntry(reply) };
  }

  async mkdir(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    await this.#ready();
    await this.#request('mkdir', { path: checkPath(path), recursive: options.recursive === true });
  }

  /** Removes a file, a symlink (never its target) or, with `recursive`, a directory tree. */
  async remove(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    await this.#ready();
    await this.#request('remove', { path: checkPath(path), recursive: options.recursive === true });
  }

  /** Renames within the workspace; `ALREADY_EXISTS` when `to` exists (never overwrites). */
  async rename(from: string, to: string): Promise<void> {
    await this.#ready();
    await this.#request('rename', { from: checkPath(from), to: checkPath(to) });
  }

  /**
   * A byte stream to 127.0.0.1:`port` inside the sandbox. Backpressure reaches the sandbox: credit is
   * granted back only as the returned stream is read. Listen for 'error' as on any socket.
   */
  async connect(port: number): Promise<Duplex> {
    checkInt(port, 1, 65_535, 'port');
    await this.#ready();
    return new Promise<Duplex>((resolve, reject) => {
      let socket: AgentSocket | undefined;
      let timer: NodeJS.Timeout | undefined;
      const ch = this.#open(
        'connect',
        { port },
        {
          reply: (msg) => {
            clearTimeout(timer);
            if (msg.ok !== true) {
              this.#end(ch);
              return reject(agentError(msg.error));
            }
            socket = new AgentSocket({
              channel: ch,
              consumed: (n) => this.#consumed(ch, n),
              send: (bytes) => this.#sendData(ch, bytes),
              end: () => {
                if (!ch.ended) this.#send(FrameType.EOF, ch.id);
              },
              abort: () => this.#abort(ch),
            });
            resolve(socket);
          },
          data: (chunk) => socket?.deliver(chunk),
          eof: () => socket?.deliverEnd(),
          close: (msg) => {
            this.#end(ch);
            socket?.remoteClosed(msg.error === undefined ? undefined : agentError(msg.error));
          },
          lost: (error) => {
            clearTimeout(timer);
            if (socket) socket.destroy(error);
            else reject(error);
          },
          buffered: () => socket?.bufferedBytes ?? 0,
        },
      );
      timer = setTimeout(() => {
        this.#abort(ch);
        reject(
          new IsolationError(
            'TIMEOUT',
            `the agent did not connect to port ${port} within ${this.#requestTimeoutMs} ms`,
          ),
        );
      }, this.#requestTimeoutMs);
    });
  }

  /**
   * Listens on `port` (0: any) on the sandbox's loopback (`listen`, agents whose hello says `streams`): each
   * connection a sandbox program makes to it reaches `onConnection` as a byte stream carried out by the
   * agent (the way egress leaves a sandbox). At most {@link MAX_ACCEPTED} streams at once; more are refused.
   */
  async listen(
    port: number,
    onConnection: (socket: Duplex, peer: string) => void,
  ): Promise<{ port: number; ended: Promise<void>; close(): void }> {
    checkInt(port, 0, 65_535, 'port');
    await this.#ready();
    if (this.#info?.streams !== true) {
      throw new IsolationError('UNSUPPORTED', "this sandbox's agent cannot listen (it predates TCP streams)");
    }
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let endListen!: () => void;
      const ended = new Promise<void>((r) => {
        endListen = r;
      });
      const ch = this.#open(
        'listen',
        { port },
        {
          reply: (msg) => {
            clearTimeout(timer);
            if (msg.ok !== true) {
              endListen();
              return reject(agentError(msg.error));
            }
            resolve({
              port: num(msg.port, 0),
              ended,
              close: () => {
                this.#abort(ch);
                endListen();
              },
            });
          },
          accept: (socket, peer) => onConnection(socket, peer),
          close: () => {
            this.#end(ch);
            endListen();
          },
          lost: (error) => {
            clearTimeout(timer);
            endListen();
            reject(error);
          },
        },
      );
      timer = setTimeout(() => {
        this.#abort(ch);
        reject(new IsolationError('TIMEOUT', `the agent did not listen within ${this.#requestTimeoutMs} ms`));
      }, this.#requestTimeoutMs);
    });
  }

  /** ACCEPT: the agent opened stream `f.channel` for a connection to one of our `listen` channels. */
  #accepted(f: Frame): void {
    const msg = parseJson(f.payload);
    if (!msg || typeof msg.listener !== 'number' || typeof msg.peer !== 'string' || msg.peer.length > 64) {
      throw new Error('a malformed ACCEPT frame');
    }
    if (f.channel < 0x80000000 || this.#channels.has(f.channel))
      throw new Error('an ACCEPT on a bad channel id');
    const listener = this.#channels.get(msg.listener);
    const accepted = [...this.#channels.keys()].filter((id) => id >= 0x80000000).length;
    if (!listener?.handlers.accept || listener.ended || accepted >= MAX_ACCEPTED) {
      // Not ours to take (any more), or too many: refuse it; the agent closes the socket.
      this.#send(FrameType.CLOSE, f.channel);
      return;
    }
    let socket: AgentSocket | undefined;
    const ch = new Channel(
      f.channel,
      {
        data: (chunk) => socket?.deliver(chunk),
        eof: () => socket?.deliverEnd(),
        close: (m) => {
          this.#end(ch);
          socket?.remoteClosed(m.error === undefined ? undefined : agentError(m.error));
        },
        lost: (error) => socket?.destroy(error),
        buffered: () => socket?.bufferedBytes ?? 0,
      },
      this.#agentWindow,
      this.#window,
    );
    this.#channels.set(f.channel, ch);
    socket = this.#streamSocket(ch);
    listener.handlers.accept(socket, msg.peer);
  }

  /** The Duplex of an accepted stream. */
  #streamSocket(ch: Channel): AgentSocket {
    return new AgentSocket({
      channel: ch,
      consumed: (n) => this.#consumed(ch, n),
      send: (bytes) => this.#sendData(ch, bytes),
      end: () => {
        if (!ch.ended) this.#send(FrameType.EOF, ch.id);
      },
      abort: () => this.#abort(ch),
    });
  }

  /**
   * Watches the workspace inside the sandbox (`watch`). Batches arrive as newline-delimited JSON; they are
   * sandbox output, so a line over {@link MAX_WATCH_LINE} or one that does not parse ends the watch.
   */
  async watch(
    listener: (batch: FileChanges) => void,
    options: { maxDirs?: number } = {},
  ): Promise<FileWatch> {
    if (options.maxDirs !== undefined) checkInt(options.maxDirs, 1, 100_000, 'maxDirs');
    await this.#ready();
    return new Promise<FileWatch>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let endWatch!: () => void;
      const ended = new Promise<void>((r) => {
        endWatch = r;
      });
      let pending = '';
      let second = 0;
      let inSecond = 0;
      const stop = () => {
        this.#abort(ch);
        endWatch();
      };
      const ch = this.#open(
        'watch',
        { maxDirs: options.maxDirs },
        {
          reply: (msg) => {
            clearTimeout(timer);
            if (msg.ok !== true) {
              endWatch();
              return reject(agentError(msg.error));
            }
            resolve({
              dirs: typeof msg.dirs === 'number' ? msg.dirs : 0,
              limited: msg.limited === true,
              ended,
              close: stop,
            });
          },
          data: (chunk) => {
            this.#consumed(ch, chunk.length);
            pending += chunk.toString('utf8');
            if (pending.length > MAX_WATCH_LINE && !pending.includes('\n')) return stop();
            let nl = pending.indexOf('\n');
            while (nl !== -1) {
              const batch = parseChanges(pending.slice(0, nl));
              pending = pending.slice(nl + 1);
              if (!batch) return stop();
              const now = Date.now();
              if (now - second >= 1000) {
                second = now;
                inSecond = 0;
              }
              inSecond += 1;
              if (inSecond <= MAX_WATCH_BATCHES_PER_S) listener(batch);
              else if (inSecond === MAX_WATCH_BATCHES_PER_S + 1) listener({ changes: [], overflow: true });
              nl = pending.indexOf('\n');
            }
          },
          close: () => {
            this.#end(ch);
            endWatch();
          },
          lost: (error) => {
            clearTimeout(timer);
            endWatch();
            reject(error);
          },
        },
      );
      timer = setTimeout(() => {
        stop();
        reject(
          new IsolationError(
            'TIMEOUT',
            `the agent did not start watching within ${this.#requestTimeoutMs} ms`,
          ),
        );
      }, this.#requestTimeoutMs);
    });
  }

  /** Closes the connection (the agent keeps running unless this was its only stdin). Idempotent. */
  async close(): Promise<void> {
    if (!this.#closedError) {
      this.#shutdown(new IsolationError('UNAVAILABLE', 'the agent connection was closed'));
      this.#output.end();
      this.#output.destroy();
      this.#input.destroy();
    }
    await this.closed;
  }

  // ------------------------------------------------------------------------------------------ internals

  async #ready(): Promise<void> {
    this.#assertOpen();
    await (this.#hello ?? this.hello());
  }

  #assertOpen(): void {
    if (this.#closedError) throw new IsolationError('UNAVAILABLE', this.#closedError.message);
  }

  #shutdown(error: IsolationError): void {
    if (this.#closedError) return;
    this.#closedError = error;
    this.#decoder.clear();
    this.#deferred = [];
    const channels = [...this.#channels.values()];
    this.#channels.clear();
    for (const ch of channels) {
      ch.ended = true;
      ch.wake();
      ch.handlers.lost(error);
    }
    this.#resolveClosed();
  }

  #onInput(chunk: Buffer | string): void {
    if (this.#closedError) return;
    // A transport that answers synchronously (streams piped in-process) must not run our handlers
    // inside our own write, before the caller has finished setting up the call.
    if (this.#writing > 0 || this.#deferred.length) {
      this.#deferred.push(chunk);
      if (this.#deferred.length === 1) queueMicrotask(() => this.#drainDeferred());
      return;
    }
    this.#parse(chunk);
  }

  #drainDeferred(): void {
    const chunks = this.#deferred;
    this.#deferred = [];
    for (const chunk of chunks) this.#parse(chunk);
  }

  #parse(chunk: Buffer | string): void {
    if (this.#closedError) return;
    try {
      const frames = this.#decoder.push(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk);
      for (const f of frames) {
        if (this.#closedError) return;
        this.#dispatch(f);
      }
    } catch (error) {
      // Anything the agent sends that we cannot follow ends the connection: it is sandbox output.
      this.#protocolFailure(`the agent broke the protocol: ${(error as Error).message}`);
    }
  }

  #protocolFailure(message: string): void {
    this.#onLog?.({ level: 'error', message });
    this.#shutdown(new IsolationError('UNAVAILABLE', `${DISCONNECTED} (${message})`));
    this.#output.destroy();
    this.#input.destroy();
  }

  #dispatch(f: Frame): void {
    if (f.channel === 0) {
      if (f.type === FrameType.LOG || f.type === FrameType.ERROR) {
        const msg = parseJson(f.payload);
        const level = f.type === FrameType.ERROR ? 'error' : str(msg?.level, 'info');
        this.#onLog?.({ level, message: str(msg?.message, '').slice(0, 8192) });
      }
      return;
    }
    if (f.type === FrameType.ACCEPT) {
      this.#accepted(f);
      return;
    }
    const ch = this.#channels.get(f.channel);
    if (!ch) return;
    const h = ch.handlers;
    switch (f.type) {
      case FrameType.REPLY:
      case FrameType.CLOSE: {
        const msg = parseJson(f.payload);
        if (!msg) throw new Error('a reply that is not a JSON object');
        if (f.type === FrameType.CLOSE) {
          if (h.close) h.close(msg);
          else this.#end(ch);
          return;
        }
        if (msg.ok !== true || !h.close) this.#end(ch);
        h.reply?.(msg);
        return;
      }
      case FrameType.DATA:
      case FrameType.DATA_ERR: {
        if (f.payload.length > ch.recvCredit) throw new Error('more data than its credit');
        ch.recvCredit -= f.payload.length;
        const handler = f.type === FrameType.DATA ? h.data : h.dataErr;
        if (handler) handler(f.payload);
        else this.#consumed(ch, f.payload.length);
        return;
      }
      case FrameType.EOF:
        h.eof?.();
        return;
      case FrameType.WINDOW:
        if (f.payload.length !== 4) throw new Error('a malformed WINDOW frame');
        ch.sendCredit += f.payload.readUInt32BE(0);
        ch.wake();
        return;
      default:
        return;
    }
  }

  #open(op: string, params: Json, handlers: Handlers, window = this.#window): Channel {
    this.#assertOpen();
    const id = this.#nextId++;
    if (id > 0xffffffff) throw new IsolationError('INTERNAL', 'agent channel ids exhausted: reconnect');
    const ch = new Channel(id, handlers, this.#agentWindow, window);
    this.#channels.set(id, ch);
    const body = Buffer.from(JSON.stringify({ ...params, op, window }));
    if (body.length > MAX_PAYLOAD) {
      this.#channels.delete(id);
      throw invalid(`${op} request is too large`);
    }
    this.#send(FrameType.OPEN, id, body);
    return ch;
  }

  /** A call answered by one REPLY, with optional DATA before it. */
  #request(op: string, params: Json, options: RequestOptions = {}): Promise<Json> {
    return this.#call(op, params, options).reply;
  }

  /** Opens the channel of a call; `reply` settles with its REPLY, a timeout or the connection's loss. */
  #call(op: string, params: Json, options: RequestOptions = {}): { ch: Channel; reply: Promise<Json> } {
    const timeoutMs = options.timeoutMs ?? this.#requestTimeoutMs;
    let resolve!: (v: Json) => void;
    let reject!: (e: unknown) => void;
    const reply = new Promise<Json>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const settle = (fn: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      fn();
    };
    const ch = this.#open(
      op,
      params,
      {
        reply: (msg) => settle(() => (msg.ok === true ? resolve(msg) : reject(agentError(msg.error)))),
        data: (chunk) => {
          this.#consumed(ch, chunk.length);
          options.onData?.(chunk, ch);
        },
        lost: (error) => settle(() => reject(error)),
      },
      options.window,
    );
    timer = setTimeout(() => {
      this.#abort(ch);
      settle(() =>
        reject(
          options.onTimeout?.() ??
            new IsolationError('TIMEOUT', `the agent did not answer ${op} within ${timeoutMs} ms`),
        ),
      );
    }, timeoutMs);
    return { ch, reply };
  }

  /** Stops a channel from our side: the agent kills or closes what it runs; later frames are ignored. */
  #abort(ch: Channel): void {
    if (ch.ended) return;
    this.#send(FrameType.CLOSE, ch.id);
    this.#end(ch);
  }

  #end(ch: Channel): void {
    ch.ended = true;
    this.#channels.delete(ch.id);
    ch.wake();
  }

  #consumed(ch: Channel, n: number): void {
    if (ch.ended || n === 0) return;
    ch.unacked += n;
    if (ch.unacked >= this.#window / 4) {
      const b = Buffer.allocUnsafe(4);
      b.writeUInt32BE(ch.unacked, 0);
      ch.recvCredit += ch.unacked;
      ch.unacked = 0;
      this.#send(FrameType.WINDOW, ch.id, b);
    }
  }

  /** Sends bytes as DATA within the agent's credit; rejects if the channel ends first. */
  async #sendData(ch: Channel, bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) {
      if (ch.ended) throw new IsolationError('INVALID_STATE', 'the channel has closed');
      if (this.#output.writableLength > OUTPUT_HIGH_WATER) {
        await this.#waitDrain();
        continue;
      }
      if (ch.sendCredit <= 0) {
        await ch.waitCredit();
        continue;
      }
      const n = Math.min(bytes.length - off, ch.sendCredit, DATA_CHUNK);
      this.#send(FrameType.DATA, ch.id, bytes.subarray(off, off + n));
      ch.sendCredit -= n;
      off += n;
    }
  }

  #waitDrain(): Promise<void> {
    this.#drain ??= new Promise<void>((resolve) => {
      const done = () => {
        this.#output.off('drain', done);
        this.#drain = undefined;
        resolve();
      };
      this.#output.on('drain', done);
      void this.closed.then(done);
    });
    return this.#drain;
  }

  #send(type: FrameType, channel: number, payload?: Uint8Array): void {
    this.#write(encodeFrame(type, channel, payload));
  }

  #write(buf: Buffer): void {
    if (this.#closedError || this.#output.destroyed || this.#output.writableEnded) return;
    this.#writing++;
    try {
      this.#output.write(buf);
    } finally {
      this.#writing--;
    }
  }
}

interface RequestOptions {
  timeoutMs?: number;
  window?: number;
  onData?: (chunk: Buffer, ch: Channel) => void;
  onTimeout?: () => IsolationError;
}

function checkNumber(v: unknown, label: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
    throw invalid(`${label} must be a positive number`);
  return v;
}

function checkPath(path: unknown): string {
  if (typeof path !== 'string') throw invalid('path must be a string');
  return path;
}

/** What a terminal needs from the client: its channel's sending, credit and closing. */
interface TerminalPort {
  channel: Channel;
  consumed(n: number): void;
  send(bytes: Uint8Array): Promise<void>;
  resize(cols: number, rows: number): void;
  close(): void;
  forget(): void;
  log(message: string): void;
}

class AgentTerminal implements Terminal {
  readonly exited: Promise<{ exitCode: number | null; signal: string | null }>;
  readonly #port: TerminalPort;
  readonly #listeners = new Set<(chunk: Uint8Array) => void>();
  #held: Buffer[] = [];
  #heldBytes = 0;
  #backlog = 0;
  #sending: Promise<void> = Promise.resolve();
  #resolveExit!: (v: { exitCode: number | null; signal: string | null }) => void;
  #exited = false;

  constructor(port: TerminalPort) {
    this.#port = port;
    this.exited = new Promise((resolve) => {
      this.#resolveExit = resolve;
    });
  }

  get bufferedBytes(): number {
    return this.#heldBytes;
  }

  /** Input for the program; ignored once it has exited. `RESOURCE_LIMIT` past 1 MiB it has not read. */
  write(data: string | Uint8Array): void {
    if (this.#exited) return;
    // A copy: the caller may reuse its buffer while this waits for credit.
    const bytes = Buffer.from(toBytes(data));
    if (this.#backlog + bytes.length > MAX_TERMINAL_BACKLOG) {
      throw new IsolationError(
        'RESOURCE_LIMIT',
        'the terminal is not reading its input: more than 1 MiB is waiting',
      );
    }
    this.#backlog += bytes.length;
    this.#sending = this.#sending
      .then(() => this.#port.send(bytes))
      .catch(() => undefined)
      .finally(() => {
        this.#backlog -= bytes.length;
      });
  }

  resize(cols: number, rows: number): void {
    checkInt(cols, 1, 10_000, 'cols');
    checkInt(rows, 1, 10_000, 'rows');
    if (!this.#exited) this.#port.resize(cols, rows);
  }

  /** Output is held (and the program stopped by flow control) while nobody listens. */
  onData(listener: (chunk: Uint8Array) => void): () => void {
    this.#listeners.add(listener);
    if (this.#held.length) {
      const held = this.#held;
      this.#held = [];
      this.#heldBytes = 0;
      for (const chunk of held) this.deliver(chunk);
    }
    return () => {
      this.#listeners.delete(listener);
    };
  }

  deliver(chunk: Buffer): void {
    if (this.#listeners.size === 0) {
      this.#held.push(chunk);
      this.#heldBytes += chunk.length;
      return;
    }
    for (const listener of this.#listeners) {
      try {
        listener(chunk);
      } catch (error) {
        this.#port.log(`terminal output listener threw: ${String(error)}`);
      }
    }
    this.#port.consumed(chunk.length);
  }

  exit(msg: Json): void {
    if (this.#exited) return;
    this.#exited = true;
    this.#resolveExit({
      exitCode: typeof msg.exitCode === 'number' ? msg.exitCode : null,
      signal: typeof msg.signal === 'string' ? msg.signal : null,
    });
  }

  /** Kills the program (and everything it started) and resolves once the agent confirms. */
  async close(): Promise<void> {
    if (this.#exited) return;
    this.#port.close();
    const timer = setTimeout(() => {
      this.#port.forget();
      this.exit({});
    }, CONFIRM_MS);
    await this.exited;
    clearTimeout(timer);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

interface SocketPort {
  channel: Channel;
  consumed(n: number): void;
  send(bytes: Uint8Array): Promise<void>;
  end(): void;
  abort(): void;
}

/** A Duplex over one connect channel; credit goes back to the agent only as the consumer reads. */
class AgentSocket extends Duplex {
  readonly #port: SocketPort;
  #queue: Buffer[] = [];
  #queued = 0;
  #wantsData = false;
  #ended = false;
  #pushedEnd = false;

  constructor(port: SocketPort) {
    super({ allowHalfOpen: true });
    this.#port = port;
  }

  get bufferedBytes(): number {
    return this.#queued + this.readableLength;
  }

  deliver(chunk: Buffer): void {
    this.#queue.push(chunk);
    this.#queued += chunk.length;
    this.#flush();
  }

  deliverEnd(): void {
    this.#ended = true;
    this.#flush();
  }

  remoteClosed(error: IsolationError | undefined): void {
    if (error) {
      this.destroy(error);
      return;
    }
    this.#ended = true;
    this.#flush();
    // The far side is fully closed: once our reader has everything, there is nothing left to do.
    if (this.readableEnded) this.destroy();
    else this.once('end', () => this.destroy());
  }

  #flush(): void {
    while (this.#wantsData && this.#queue.length) {
      const chunk = this.#queue.shift() as Buffer;
      this.#queued -= chunk.length;
      this.#port.consumed(chunk.length);
      this.#wantsData = this.push(chunk);
    }
    if (this.#ended && this.#queue.length === 0 && !this.#pushedEnd) {
      this.#pushedEnd = true;
      this.push(null);
    }
  }

  override _read(): void {
    this.#wantsData = true;
    this.#flush();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#port.send(chunk).then(
      () => callback(),
      (error: unknown) => callback(error as Error),
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#port.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#queue = [];
    this.#queued = 0;
    if (!this.#port.channel.ended) this.#port.abort();
    callback(error);
  }
}
