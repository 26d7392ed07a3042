import { lookup } from 'node:dns/promises';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as netConnect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { Duplex } from 'node:stream';
import { rootCertificates, TLSSocket, connect as tlsConnect } from 'node:tls';
import {
  canonicalizeHost,
  checkEgressAddress,
  checkEgressTarget,
  type EgressDenial,
  type EgressDenyReason,
  type EgressLimits,
  type NetworkSettings,
  renderSecretHeader,
  type SecretHeader,
} from '@studio/policy';
import type { Logger } from '../core/logger.ts';
import { MAX_CLIENT_HELLO_BYTES, readFirstBytes } from './client-hello.ts';

/** The session a connection from a sandbox belongs to, as the proxy sees it. */
export interface EgressSession {
  readonly sessionId: string;
  readonly ownerId: string;
  /** The session's settings now: read per connection, so `sessions.setNetwork` applies to the next one. */
  settings(): NetworkSettings;
  /**
   * The session's secrets that may go to `host:port`, with their values; empty (the common case) when none. Read
   * per tunnel, so a rotated value is used from the next connection.
   */
  secretsFor?(host: string, port: number): Promise<readonly SecretBinding[]>;
}

/** A secret as the proxy uses it: the placeholder the session sees, the value, and the header it goes in. */
export interface SecretBinding {
  readonly name: string;
  readonly placeholder: string;
  readonly value: string;
  readonly header: SecretHeader;
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
  /** Names (never values) of the secrets this connection's requests carried; absent when none. */
  secrets?: string[];
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
  /**
   * Secrets: the Studio CA that signs a leaf for a host whose requests must carry a secret, and the extra CAs
   * trusted upstream (beside Node's roots). Without it, tunnels are never opened and secrets never injected.
   */
  intercept?: {
    leafFor(host: string): Promise<{ certPem: string; keyPem: string }>;
    upstreamCa?: readonly string[];
  };
}

/** A tunnel the proxy terminates to put secrets into its requests. */
interface Interception {
  state: SessionState;
  name: string;
  address: string;
  port: number;
  bindings: readonly SecretBinding[];
  used: Set<string>;
  bytesOut: number;
  bytesIn: number;
  denial?: EgressDenial;
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

/** The headers a proxy passes on: all but the hop-by-hop ones, each value through `map` (default: as it is). */
function forwardable(
  headers: IncomingMessage['headers'],
  map: (value: string) => string = (value) => value,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name))
      out[name] = Array.isArray(value) ? value.map(map) : map(value);
  }
  return out;
}

/** A refused request inside the proxy: 403, the reason in a header, `EGRESS_DENIED (reason): message` as body. */
function refuse(res: ServerResponse, denial: EgressDenial, headers: Record<string, string> = {}): void {
  const body = `EGRESS_DENIED (${denial.reason}): ${denial.message}\n`;
  res.writeHead(403, {
    'content-type': 'text/plain; charset=utf-8',
    'x-studio-egress-denied': denial.reason,
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

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

/**
 * Whether a Host header names `host:port`, in any spelling of either; a Host without a port means
 * `defaultPort` (80 for http://, 443 inside a TLS tunnel).
 */
function sameHost(header: string, host: string, port: number, defaultPort: number): boolean {
  const m = /^(\[[^\]]+\]|[^:]+)(?::([0-9]{1,5}))?$/.exec(header);
  if (!m) return false;
  try {
    const a = canonicalizeHost(m[1] as string).value;
    const b = canonicalizeHost(host).value;
    return a === b && Number(m[2] ?? defaultPort) === port;
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
  /** Serves the requests inside tunnels the proxy terminates (secrets); see {@link EgressProxy.#intercept}. */
  readonly #inner = createServer({ maxHeaderSize: 16_384, requestTimeout: 60_000, headersTimeout: 30_000 });
  readonly #interceptOf = new WeakMap<object, Interception>();

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
    this.#inner.keepAliveTimeout = options.limits.idleTimeoutMs;
    this.#inner.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.#forwardWithSecrets(req, res);
    });
    this.#inner.on('clientError', (_error, socket: Duplex) => socket.destroy());
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

  /** Whether tunnels to secrets' hosts are terminated (the proxy was given a CA). */
  get intercepts(): boolean {
    return this.#o.intercept !== undefined;
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
    result: { denial?: EgressDenial; bytesOut?: number; bytesIn?: number; secrets?: string[] },
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
        ...(result.secrets ? { secrets: result.secrets } : {}),
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
    if (
      hello.kind === 'tls' &&
      hello.serverName === checked.name &&
      this.#o.intercept &&
      state.session.secretsFor
    ) {
      const bindings = await state.session.secretsFor(checked.name, target.port).catch((error: unknown) => {
        // The secret then stays out: the tunnel goes through as any other, with the placeholder unchanged.
        this.#o.logger.warn('egress: the session secrets could not be read', { error: String(error) });
        return [];
      });
      if (bindings.length > 0) {
        return this.#intercept(state, socket, first, checked, target.port, bindings, started);
      }
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
    // One side closing ends the other only once what is queued for it is written: destroying it at once would cut
    // off the end of a download (the agent's channel is slower than the destination).
    const drainThenFinish = (other: Duplex) => {
      if (other.destroyed || other.writableFinished) return finish();
      other.end();
      other.once('finish', finish);
      other.once('close', finish);
    };
    upstream.once('close', () => drainThenFinish(socket));
    socket.once('close', () => drainThenFinish(upstream));
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

  /**
   * Terminates a tunnel whose host a secret of the session may go to: TLS towards the sandbox with a leaf for the
   * checked name from the Studio CA, HTTP/1.1 inside it parsed by {@link EgressProxy.#inner}, each request sent on
   * to the checked address over TLS verified for the name (Node's roots and the operator's extra CAs), with the
   * placeholders swapped in its headers. One event for the tunnel, naming the secrets it carried.
   */
  async #intercept(
    state: SessionState,
    socket: Duplex,
    first: Buffer,
    checked: { address: string; name: string },
    port: number,
    bindings: readonly SecretBinding[],
    started: number,
  ): Promise<void> {
    const intercept = this.#o.intercept as NonNullable<EgressProxyOptions['intercept']>;
    let leaf: { certPem: string; keyPem: string };
    try {
      leaf = await intercept.leafFor(checked.name);
    } catch (error) {
      this.#o.logger.warn('egress: no certificate for an intercepted host', { error: String(error) });
      this.#emit(state, 'connect', checked.name, port, started, {
        denial: { reason: 'upstream_failed', message: 'the proxy could not make a certificate' },
      });
      return void socket.destroy();
    }
    const context: Interception = {
      state,
      name: checked.name,
      address: checked.address,
      port,
      bindings,
      used: new Set(),
      bytesOut: 0,
      bytesIn: 0,
    };
    // TLS reads a stream of its own that starts with the ClientHello already read. (Handing it the socket itself
    // would not do: over a real socket Node's TLS reads the file descriptor, past the bytes taken here.)
    const carrier = new Duplex({
      read: () => void socket.resume(),
      write: (chunk: Buffer, _encoding, callback) => void socket.write(chunk, callback),
      final: (callback) => {
        socket.end();
        callback();
      },
      destroy: (error, callback) => {
        socket.destroy();
        callback(error);
      },
    });
    carrier.push(first);
    socket.on('data', (chunk: Buffer) => {
      if (!carrier.push(chunk)) socket.pause();
    });
    socket.once('end', () => carrier.push(null));
    const tls = new TLSSocket(carrier as never, {
      isServer: true,
      cert: leaf.certPem,
      key: leaf.keyPem,
      ALPNProtocols: ['http/1.1'],
    });
    this.#interceptOf.set(tls, context);
    const limits = this.#o.limits;
    const total = setTimeout(() => tls.destroy(), limits.totalTimeoutMs);
    tls.setTimeout(limits.idleTimeoutMs, () => tls.destroy());
    tls.on('error', () => tls.destroy());
    tls.once('close', () => {
      clearTimeout(total);
      socket.destroy();
      this.#emit(state, 'connect', checked.name, port, started, {
        bytesOut: context.bytesOut,
        bytesIn: context.bytesIn,
        ...(context.denial ? { denial: context.denial } : {}),
        ...(context.used.size > 0 ? { secrets: [...context.used].sort() } : {}),
      });
    });
    socket.once('close', () => tls.destroy());
    socket.resume();
    this.#inner.emit('connection', tls);
  }

  /** One request inside an intercepted tunnel: its Host checked, the placeholders swapped, sent on upstream. */
  #forwardWithSecrets(req: IncomingMessage, res: ServerResponse): void {
    const context = this.#interceptOf.get(req.socket);
    if (!context) return void res.destroy();
    const { state, name, address, port } = context;
    if (!sameHost(req.headers.host ?? '', name, port, 443)) {
      context.denial = {
        reason: 'host_mismatch',
        message: `the Host header is not ${name}, the host the tunnel was opened to`,
      };
      refuse(res, context.denial, { connection: 'close' });
      return;
    }
    const headers = forwardable(req.headers, (value) => this.#swap(context, value));
    for (const binding of context.bindings) {
      // The program did not send the secret's header at all: the proxy adds it, as the secret says.
      if (headers[binding.header.name] === undefined) {
        headers[binding.header.name] = renderSecretHeader(binding.header, binding.value);
        context.used.add(binding.name);
      }
    }
    const limits = this.#o.limits;
    const upstream = httpRequest({
      host: name,
      port,
      method: req.method,
      path: req.url,
      headers,
      setHost: false,
      timeout: limits.idleTimeoutMs,
      createConnection: () =>
        tlsConnect({
          socket: this.#dial(address, port) as never,
          servername: name,
          host: name,
          ALPNProtocols: ['http/1.1'],
          ...(this.#o.intercept?.upstreamCa?.length
            ? { ca: [...rootCertificates, ...this.#o.intercept.upstreamCa] }
            : {}),
        }) as never,
    });
    upstream.on('timeout', () => upstream.destroy(new Error('idle too long')));
    upstream.on('error', (error) => {
      context.denial ??= {
        reason: 'upstream_failed',
        message: /certificate|self.signed|verify/i.test(String(error))
          ? `${name} presented a certificate that does not verify`
          : `${name} did not answer`,
      };
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
        res.end(`EGRESS_DENIED (upstream_failed): ${context.denial.message}\n`);
      } else {
        res.destroy();
      }
    });
    upstream.on('response', (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, forwardable(answer.headers));
      answer.on('data', (chunk: Buffer) => {
        context.bytesIn += chunk.length;
        state.bytes += chunk.length;
      });
      answer.pipe(res);
    });
    req.on('data', (chunk: Buffer) => {
      context.bytesOut += chunk.length;
      state.bytes += chunk.length;
    });
    req.pipe(upstream);
  }

  /** A header value with every placeholder of the tunnel's secrets replaced by its value. */
  #swap(context: Interception, value: string): string {
    let out = value;
    for (const binding of context.bindings) {
      if (out.includes(binding.placeholder)) {
        out = out.split(binding.placeholder).join(binding.value);
        context.used.add(binding.name);
      }
    }
    return out;
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
      refuse(res, denial);
    };
    if (!url) {
      return deny({
        reason: 'bad_request',
        message: 'this is a proxy: send absolute http:// requests, or CONNECT for https://',
      });
    }
    if (!sameHost(req.headers.host ?? '', url.hostname, port, 80)) {
      return deny({
        reason: 'host_mismatch',
        message: `the Host header is not ${url.host}, the request's target`,
      });
    }
    const limited = this.#admit(state, state.open.size);
    if (limited) return deny(limited);
    const checked = await this.#check(state, url.hostname, port);
    if ('reason' in checked) return deny(checked);

    const headers = forwardable(req.headers);
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
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, forwardable(answer.headers));
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
