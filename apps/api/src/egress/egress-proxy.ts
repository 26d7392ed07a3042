import { lookup } from 'node:dns/promises';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as netConnect } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Duplex } from 'node:stream';
import {
  canonicalizeHost,
  checkEgressAddress,
  checkEgressTarget,
  type EgressDenial,
  type EgressDenyReason,
  type EgressLimits,
  type NetworkSettings,
} from '@studio/policy';
import type { Logger } from '../core/logger.ts';
import { MAX_CLIENT_HELLO_BYTES, readFirstBytes } from './client-hello.ts';

/** The session a connection from a sandbox belongs to, as the proxy sees it. */
export interface EgressSession {
  readonly sessionId: string;
  readonly ownerId: string;
  /** The session's settings now: read per connection, so `sessions.setNetwork` applies to the next one. */
  settings(): NetworkSettings;
}

/** One connection (or one plain-HTTP request) through the proxy, allowed or not: an event and an audit record. */
export interface EgressEvent {
  sessionId: string;
  ownerId: string;
  /** `connect`: a CONNECT tunnel (HTTPS and other TLS); `http`: one absolute-form plain-HTTP request. */
  via: 'connect' | 'http';
  host: string;
  port: number;
  allowed: boolean;
  reason?: EgressDenyReason;
  message?: string;
  /** Bytes from the sandbox to the destination, and back. */
  bytesOut: number;
  bytesIn: number;
  durationMs: number;
}

/** Options for {@link EgressProxy}. */
export interface EgressProxyOptions {
  limits: EgressLimits;
  /** A name's addresses (all of them); default the system resolver. Tests pass their own. */
  resolve?: (host: string) => Promise<string[]>;
  /** Opens a TCP connection to a checked address; default `net.connect`. */
  dial?: (address: string, port: number) => Duplex;
  /** The host's own addresses; default every interface's. */
  ownAddresses?: () => string[];
  onEvent: (event: EgressEvent) => void;
  logger: Logger;
}

const RESOLVE_TIMEOUT_MS = 5_000;
const DIAL_TIMEOUT_MS = 10_000;
const HELLO_TIMEOUT_MS = 10_000;
const HOUR_MS = 3_600_000;
/** Headers a proxy must not forward (RFC 9110 §7.6.1), plus the proxy's own. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

interface SessionState {
  session: EgressSession;
  open: Set<Duplex>;
  /** Connection start times within the last minute (the rate limit). */
  starts: number[];
  /** Bytes moved in the current hour window, and when it began. */
  bytes: number;
  windowStart: number;
}

/** The system resolver: every address of a name, in the order it gives them. */
async function systemResolve(host: string): Promise<string[]> {
  const found = await lookup(host, { all: true, verbatim: true });
  return found.map((a) => a.address);
}

function systemOwnAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}

function defaultDial(address: string, port: number): Duplex {
  return netConnect({ host: address, port });
}

/** `host:port` of a CONNECT request target, or null. IPv6 in brackets. */
function authorityOf(target: string): { host: string; port: number } | null {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]/@\s]+):([1-9][0-9]{0,4})$/.exec(target);
  if (!m) return null;
  return { host: m[1] as string, port: Number(m[2]) };
}

/** Whether a Host header names the request target's host and port, in any spelling of either. */
function sameHost(header: string, url: URL): boolean {
  const m = /^(\[[^\]]+\]|[^:]+)(?::([0-9]{1,5}))?$/.exec(header);
  if (!m) return false;
  try {
    const a = canonicalizeHost(m[1] as string).value;
    const b = canonicalizeHost(url.hostname).value;
    return a === b && Number(m[2] ?? 80) === Number(url.port || 80);
  } catch {
    return false;
  }
}

function timeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out`)), ms);
    }),
  ]);
}

/**
 * Studio's egress proxy (issue 18): every connection a sandbox program makes to its in-sandbox proxy endpoint
 * arrives here as a byte stream carried by the agent, with the session it came from. It speaks HTTP/1.1 proxy
 * requests — CONNECT tunnels and absolute-form plain HTTP — parsed by Node's own HTTP server, and lets a
 * connection out only when:
 *
 * 1. the session's settings allow the destination by name ({@link checkEgressTarget}: mode, allowlist, ports,
 *    IP literals only inside an allowed block);
 * 2. the proxy's own resolution of the name gives only addresses {@link checkEgressAddress} accepts (no
 *    loopback, private, link-local, metadata or the host's own), and it dials that checked address, never the
 *    name again (DNS rebinding);
 * 3. a tunnel's first bytes are a TLS ClientHello whose SNI is the allowed name, checked before anything is
 *    dialled (nothing but TLS goes through a tunnel); a plain-HTTP request's Host is its target's;
 * 4. the session is within its limits: open connections, new connections a minute, bytes an hour.
 *
 * Idle and total timeouts end connections. Every connection, allowed or denied, is reported to `onEvent`.
 * Node's HTTP parser is used rather than a proxy library: the libraries dial the name they were given (the
 * rebinding check needs the dial to take the checked address) and none checks SNI.
 */
export class EgressProxy {
  readonly #o: EgressProxyOptions;
  readonly #server = createServer({ maxHeaderSize: 16_384, requestTimeout: 60_000, headersTimeout: 30_000 });
  readonly #sessionOf = new WeakMap<object, SessionState>();
  readonly #sessions = new Map<string, SessionState>();
  readonly #resolve: (host: string) => Promise<string[]>;
  readonly #dial: (address: string, port: number) => Duplex;
  readonly #own: () => string[];

  constructor(options: EgressProxyOptions) {
    this.#o = options;
    this.#resolve = options.resolve ?? systemResolve;
    this.#dial = options.dial ?? defaultDial;
    this.#own = options.ownAddresses ?? systemOwnAddresses;
    this.#server.keepAliveTimeout = options.limits.idleTimeoutMs;
    this.#server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      void this.#tunnel(req, socket, head);
    });
    this.#server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      void this.#forward(req, res);
    });
    this.#server.on('clientError', (_error, socket: Duplex) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  /**
   * Serves one connection a program in the session's sandbox opened to its proxy endpoint. The stream is
   * closed by the proxy when the request is refused, the connection ends or a limit is reached.
   */
  handle(socket: Duplex, session: EgressSession): void {
    const state = this.#state(session);
    this.#sessionOf.set(socket, state);
    state.open.add(socket);
    socket.once('close', () => state.open.delete(socket));
    socket.on('error', () => socket.destroy());
    // Node's server calls these on real sockets; an agent stream has no TCP options to set.
    const s = socket as Duplex & Record<string, unknown>;
    for (const name of ['setTimeout', 'setNoDelay', 'setKeepAlive']) {
      if (typeof s[name] !== 'function') s[name] = () => socket;
    }
    this.#server.emit('connection', socket);
  }

  /** Ends every connection of a session (its network settings changed, or it stopped). */
  closeSession(sessionId: string): void {
    const state = this.#sessions.get(sessionId);
    if (!state) return;
    for (const socket of state.open) socket.destroy();
    this.#sessions.delete(sessionId);
  }

  /** Ends every connection. */
  close(): void {
    for (const id of [...this.#sessions.keys()]) this.closeSession(id);
  }

  #state(session: EgressSession): SessionState {
    let state = this.#sessions.get(session.sessionId);
    if (!state) {
      state = { session, open: new Set(), starts: [], bytes: 0, windowStart: Date.now() };
      this.#sessions.set(session.sessionId, state);
    }
    state.session = session;
    return state;
  }

  /** The session's limits, checked for each new connection; counts it when it may start. */
  #admit(state: SessionState, active: number): EgressDenial | null {
    const now = Date.now();
    const limits = this.#o.limits;
    state.starts = state.starts.filter((t) => now - t < 60_000);
    if (now - state.windowStart >= HOUR_MS) {
      state.windowStart = now;
      state.bytes = 0;
    }
    if (state.starts.length >= limits.connectionsPerMinute) {
      return {
        reason: 'rate_limit',
        message: `this session opened ${limits.connectionsPerMinute} connections in the last minute; wait and retry`,
      };
    }
    state.starts.push(now);
    if (active > limits.maxConnections) {
      return {
        reason: 'connection_limit',
        message: `this session has ${limits.maxConnections} connections open; close some (reuse connections)`,
      };
    }
    if (state.bytes >= limits.maxBytesPerHour) {
      return {
        reason: 'byte_limit',
        message: `this session moved its ${limits.maxBytesPerHour} bytes for this hour; wait for the next hour`,
      };
    }
    return null;
  }

  /** Checks a destination by name and by its resolved addresses; the address to dial, or why not. */
  async #check(
    state: SessionState,
    host: string,
    port: number,
  ): Promise<{ address: string; name: string } | EgressDenial> {
    const decision = checkEgressTarget(state.session.settings(), host, port, {
      allowOpen: this.#o.limits.allowOpen,
    });
    if (!decision.allowed) return decision;
    const name = decision.host.value;
    let addresses: string[];
    if (decision.host.kind === 'name') {
      try {
        addresses = await timeout(this.#resolve(name), RESOLVE_TIMEOUT_MS, 'resolving');
      } catch {
        return { reason: 'resolve_failed', message: `${name} could not be resolved` };
      }
      if (addresses.length === 0) return { reason: 'resolve_failed', message: `${name} has no address` };
    } else {
      addresses = [name];
    }
    const own = this.#own();
    for (const address of addresses) {
      const refused = checkEgressAddress(address, {
        ownAddresses: own,
        reachableNets: this.#o.limits.reachableNets,
      });
      if (refused) return { reason: refused.reason, message: `${name}: ${refused.message}` };
    }
    return { address: addresses[0] as string, name };
  }

  #emit(
    state: SessionState,
    via: EgressEvent['via'],
    host: string,
    port: number,
    started: number,
    result: { denial?: EgressDenial; bytesOut?: number; bytesIn?: number },
  ): void {
    try {
      this.#o.onEvent({
        sessionId: state.session.sessionId,
        ownerId: state.session.ownerId,
        via,
        host: host.slice(0, 253),
        port,
        allowed: result.denial === undefined,
        ...(result.denial ? { reason: result.denial.reason, message: result.denial.message } : {}),
        bytesOut: result.bytesOut ?? 0,
        bytesIn: result.bytesIn ?? 0,
        durationMs: Date.now() - started,
      });
    } catch (error) {
      this.#o.logger.warn('egress event handler threw', { error });
    }
  }

  /** Refuses a CONNECT with a 403 that names the reason (curl and npm print the status). */
  #refuseTunnel(socket: Duplex, denial: EgressDenial): void {
    const body = `EGRESS_DENIED (${denial.reason}): ${denial.message}\n`;
    if (socket.writable) {
      socket.end(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\nx-studio-egress-denied: ${denial.reason}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    }
    setTimeout(() => socket.destroy(), 1_000).unref();
  }

  async #tunnel(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const state = this.#sessionOf.get(socket);
    if (!state) return void socket.destroy();
    const started = Date.now();
    const target = authorityOf(req.url ?? '');
    const host = target?.host ?? (req.url ?? '').slice(0, 100);
    const port = target?.port ?? 0;
    const deny = (denial: EgressDenial) => {
      this.#emit(state, 'connect', host, port, started, { denial });
      this.#refuseTunnel(socket, denial);
    };
    if (!target) return deny({ reason: 'bad_request', message: 'CONNECT needs host:port' });
    const limited = this.#admit(state, state.open.size);
    if (limited) return deny(limited);
    const checked = await this.#check(state, target.host, target.port);
    if ('reason' in checked) return deny(checked);

    // The tunnel is "established" towards the sandbox only, so that its first bytes can be checked before
    // anything is dialled: a ClientHello for the allowed name, or a plain HTTP request.
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    let first = head;
    const hello = await new Promise<ReturnType<typeof readFirstBytes> | null>((resolve) => {
      const done = (value: ReturnType<typeof readFirstBytes> | null) => {
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('close', onClose);
        resolve(value);
      };
      const decide = () => {
        const seen = readFirstBytes(first);
        if (seen.kind !== 'incomplete') done(seen);
        else if (first.length >= MAX_CLIENT_HELLO_BYTES) done({ kind: 'other' });
      };
      const onData = (chunk: Buffer) => {
        first = Buffer.concat([first, chunk]);
        decide();
      };
      const onClose = () => done(null);
      const timer = setTimeout(() => done(null), HELLO_TIMEOUT_MS);
      socket.on('data', onData);
      socket.once('close', onClose);
      decide();
    });
    if (hello === null) return void socket.destroy();
    socket.pause();
    let denial: EgressDenial | null = null;
    if (hello.kind === 'tls') {
      if (hello.serverName !== null && hello.serverName !== checked.name) {
        denial = {
          reason: 'sni_mismatch',
          message: `the TLS server name ${hello.serverName} is not ${checked.name}, the host the tunnel was opened to`,
        };
      } else if (hello.serverName === null && checked.name !== checked.address) {
        denial = {
          reason: 'sni_mismatch',
          message: `a TLS connection to ${checked.name} must name it (SNI)`,
        };
      }
    } else {
      // Plain HTTP goes as a proxy request (checked per request, Host included), never blind through a tunnel.
      denial = {
        reason: 'not_tls',
        message: `only TLS is carried through a tunnel to ${checked.name}; use https://, or send http:// as a proxy request`,
      };
    }
    if (denial) {
      this.#emit(state, 'connect', host, port, started, { denial });
      return void socket.destroy();
    }
    this.#pipe(state, socket, first, checked.address, target.port, (bytesOut, bytesIn, failure) => {
      this.#emit(state, 'connect', checked.name, target.port, started, {
        bytesOut,
        bytesIn,
        ...(failure ? { denial: failure } : {}),
      });
    });
  }

  /** Dials the checked address and carries bytes both ways with the limits; `done` once both sides closed. */
  #pipe(
    state: SessionState,
    socket: Duplex,
    first: Buffer,
    address: string,
    port: number,
    done: (bytesOut: number, bytesIn: number, failure?: EgressDenial) => void,
  ): void {
    const limits = this.#o.limits;
    const upstream = this.#dial(address, port);
    let bytesOut = 0;
    let bytesIn = 0;
    let connected = false;
    let finished = false;
    let failure: EgressDenial | undefined;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(idle);
      clearTimeout(total);
      clearTimeout(dialTimer);
      socket.destroy();
      upstream.destroy();
      done(bytesOut, bytesIn, failure);
    };
    const cut = (reason: EgressDenyReason, message: string) => {
      failure ??= { reason, message };
      finish();
    };
    const idle = setTimeout(() => cut('upstream_failed', 'idle too long'), limits.idleTimeoutMs);
    const total = setTimeout(() => cut('upstream_failed', 'open too long'), limits.totalTimeoutMs);
    const dialTimer = setTimeout(
      () => cut('upstream_failed', 'the destination did not answer'),
      DIAL_TIMEOUT_MS,
    );
    const count = (n: number, out: boolean) => {
      if (out) bytesOut += n;
      else bytesIn += n;
      state.bytes += n;
      idle.refresh();
      if (state.bytes > limits.maxBytesPerHour)
        cut('byte_limit', 'the session reached its bytes for this hour');
    };
    upstream.once('connect', () => {
      connected = true;
      clearTimeout(dialTimer);
    });
    upstream.on('error', () => {
      if (!connected) cut('upstream_failed', 'the destination refused the connection');
      finish();
    });
    socket.on('error', finish);
    upstream.once('close', finish);
    socket.once('close', finish);
    if (first.length > 0) {
      count(first.length, true);
      upstream.write(first);
    }
    socket.on('data', (chunk: Buffer) => count(chunk.length, true));
    upstream.on('data', (chunk: Buffer) => count(chunk.length, false));
    socket.pipe(upstream);
    upstream.pipe(socket);
    socket.resume();
  }

  /** One absolute-form plain-HTTP request (`GET http://host/path`). */
  async #forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const state = this.#sessionOf.get(req.socket);
    if (!state) return void res.destroy();
    const started = Date.now();
    let url: URL | null = null;
    try {
      url = /^http:\/\//i.test(req.url ?? '') ? new URL(req.url as string) : null;
    } catch {
      url = null;
    }
    const host = url?.hostname ?? '';
    const port = url ? Number(url.port || 80) : 0;
    const deny = (denial: EgressDenial) => {
      this.#emit(state, 'http', host || (req.url ?? '').slice(0, 100), port, started, { denial });
      const body = `EGRESS_DENIED (${denial.reason}): ${denial.message}\n`;
      res.writeHead(403, {
        'content-type': 'text/plain; charset=utf-8',
        'x-studio-egress-denied': denial.reason,
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    };
    if (!url) {
      return deny({
        reason: 'bad_request',
        message: 'this is a proxy: send absolute http:// requests, or CONNECT for https://',
      });
    }
    if (!sameHost(req.headers.host ?? '', url)) {
      return deny({
        reason: 'host_mismatch',
        message: `the Host header is not ${url.host}, the request's target`,
      });
    }
    const limited = this.#admit(state, state.open.size);
    if (limited) return deny(limited);
    const checked = await this.#check(state, url.hostname, port);
    if ('reason' in checked) return deny(checked);

    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
    }
    let bytesOut = 0;
    let bytesIn = 0;
    const limits = this.#o.limits;
    const upstream = httpRequest({
      host: checked.address,
      port,
      method: req.method,
      path: `${url.pathname}${url.search}`,
      headers,
      setHost: false,
      timeout: limits.idleTimeoutMs,
      createConnection: () => this.#dial(checked.address, port) as never,
    });
    const total = setTimeout(() => upstream.destroy(new Error('open too long')), limits.totalTimeoutMs);
    const finish = (failure?: EgressDenial) => {
      clearTimeout(total);
      this.#emit(state, 'http', checked.name, port, started, {
        bytesOut,
        bytesIn,
        ...(failure ? { denial: failure } : {}),
      });
    };
    upstream.on('timeout', () => upstream.destroy(new Error('idle too long')));
    upstream.on('error', () => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`the destination ${checked.name} did not answer\n`);
      } else {
        res.destroy();
      }
      finish({ reason: 'upstream_failed', message: `${checked.name} did not answer` });
    });
    upstream.on('response', (answer) => {
      const out: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(answer.headers)) {
        if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
      }
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, out);
      answer.on('data', (chunk: Buffer) => {
        bytesIn += chunk.length;
        state.bytes += chunk.length;
      });
      answer.pipe(res);
      answer.once('end', () => finish());
      answer.once('error', () => finish({ reason: 'upstream_failed', message: 'the response broke off' }));
    });
    req.on('data', (chunk: Buffer) => {
      bytesOut += chunk.length;
      state.bytes += chunk.length;
    });
    req.pipe(upstream);
  }
}
