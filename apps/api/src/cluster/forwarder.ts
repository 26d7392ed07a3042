import { createHash, randomBytes } from 'node:crypto';
import { Agent, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { Store, NodeRecord as StoredNode } from '@studio/db';
import {
  DEFAULT_NODE_STALE_AFTER_MS,
  NODE_AUTH_HEADER,
  type NodeRecord,
  type PlacementRequest,
  placementRefusalMessage,
  placeSession,
  signNodeRequest,
} from '@studio/policy';
import { ProxyServer } from 'http-proxy-3';
import { AppError } from '../core/errors.ts';
import { execNodeTag, nodeTag } from '../core/ids.ts';
import type { Logger } from '../core/logger.ts';
import { sessionIdOfSandbox } from '../e2b/e2b-ids.ts';
import { e2bHostOf, previewHostLabel, requestHostName } from '../preview/preview.ts';
import { encodeForwardedClient, FORWARDED_CLIENT_HEADER, type ForwardedClient } from './node-guard.ts';
import {
  PINNED_PROCEDURES,
  PLACED_PROCEDURES,
  type PlacementHint,
  type PlacementHints,
} from './placement-hints.ts';

/** Options for {@link Forwarder}. */
export interface ForwarderOptions {
  store: Store;
  /** The cluster secret every node checks ({@link signNodeRequest}). */
  secret: Uint8Array;
  logger: Logger;
  /** Procedures that run on a node, by the input field that names it ({@link routedProcedures}). */
  routed: ReadonlyMap<string, RouteKey>;
  /** The memory a session reserves when its create names none (the policy's default). */
  defaultMemoryBytes: number;
  /** The largest request body read (the API's own limit). */
  maxBodyBytes: number;
  /** Placement's coin; tests pass a seeded one. */
  random?: () => number;
  /** How long the list of nodes is reused before it is read again (ms); default 1000. */
  nodesTtlMs?: number;
  /** A node not heard from for this long is not called, and calls waiting on it are ended (ms); default 15 s. */
  staleAfterMs?: number;
  /** How often calls waiting on a node are checked against its reports (ms); default 2000. */
  watchdogMs?: number;
  /** What placed and pinned calls name, resolved for their caller ({@link createPlacementHints}). */
  hints?: PlacementHints;
}

/** A call forwarded to a node and not yet answered in full. */
interface InFlight {
  readonly node: string;
  readonly res: ServerResponse;
  /** The request to the node, once it has a socket. */
  upstream?: ClientRequest;
  /** Why the replica ended it (its node stopped reporting). */
  ended?: AppError;
}

/** What {@link Forwarder.trpc} did with a request. */
export type ForwardOutcome =
  /** Sent to a node; the response is on its way. */
  | { kind: 'forwarded'; nodeId: string }
  /** Not a node's call: serve it here (its body, when it was read, is on `req.body`). */
  | { kind: 'local' }
  /** Refused before any node saw it. */
  | { kind: 'refused'; error: AppError };

/**
 * How long a replica keeps an idle connection to a node (ms). Node's agent closes a free socket after this; an
 * active one's timeout only emits an event nobody acts on (the watchdog, not a timer, ends calls to a hung node).
 */
export const FORWARDER_IDLE_SOCKET_MS = 15_000;

/** Network errors after which a call sent down a reused connection is sent once more on a new one. */
const RESET_ON_REUSE: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE']);

/** How long a session's node is remembered (ms), and for how many sessions at most. */
const SESSION_NODE_TTL_MS = 5000;
const SESSION_NODE_CACHE = 10_000;

/**
 * Calls a replica answers from the store itself when the session's node cannot be reached: its record, its
 * history, and destroying it (the node removes the sandbox as an orphan if it ever comes back).
 */
const STORE_FALLBACK: ReadonlySet<string> = new Set(['sessions.get', 'events.history', 'sessions.destroy']);

/** The input field by which a call finds its node: the session it names, or the exec (ids carry their node). */
export type RouteKey = 'sessionId' | 'execId';

/**
 * The procedures an API replica forwards, from the router itself: those whose input has a `sessionId` (run on
 * that session's node) or an `execId` (run on the node that started it). New procedures are routed as they are
 * added; `sessions.create` is placed.
 */
export function routedProcedures(procedures: Record<string, unknown>): Map<string, RouteKey> {
  const routed = new Map<string, RouteKey>();
  for (const [name, procedure] of Object.entries(procedures)) {
    const inputs = (procedure as { _def?: { inputs?: unknown[] } })._def?.inputs ?? [];
    for (const input of inputs) {
      const shape = (input as { shape?: Record<string, unknown> } | undefined)?.shape;
      if (shape && 'sessionId' in shape) routed.set(name, 'sessionId');
      else if (shape && 'execId' in shape) routed.set(name, 'execId');
    }
  }
  return routed;
}

/**
 * The API replica's half of scale-out (issue 23, docs/scale-out.md): each call that belongs to a session goes to
 * the node service that runs it (the session's `instance_id` is the node's id), and `sessions.create` goes to a
 * node chosen by placement ({@link placeSession}). The node does everything else exactly as single-box Studio
 * does: it authenticates the caller's own credentials (which pass through untouched) against the shared store,
 * and checks this replica's signature over the request ({@link signNodeRequest}), so nothing but an API replica
 * can call a node. Calls that belong to no session (sign-in, tokens, users, lists) are served by the replica.
 */
export class Forwarder {
  readonly #options: ForwarderOptions;
  // Keep-alive: without an agent every forwarded call would open a new connection to its node (measured: the
  // exec round trip through a replica went from 1.6x the single box's to 1.23x; bench/cluster.bench.ts).
  // Idle connections are closed here first, well before the node would (server.ts keeps them longer on nodes).
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 256, timeout: FORWARDER_IDLE_SOCKET_MS });
  readonly #proxy = new ProxyServer({ xfwd: false, followRedirects: false, agent: this.#agent });
  /** Which node runs a session, briefly remembered (routing reads it on every call; a session stays on its node). */
  readonly #sessionNodes = new Map<string, { node: string; at: number }>();
  #nodes: { at: number; list: Promise<StoredNode[]> } | undefined;
  /** Preview labels of live sessions (a label is a hash of the session id), read again on a miss. */
  #labels = new Map<string, string>();
  #labelsAt = 0;
  /**
   * Calls forwarded and not yet answered. A node that hangs (a frozen host, a stuck process) still accepts TCP,
   * so without this a call to it would wait forever: the watchdog ends those whose node has stopped reporting.
   */
  readonly #inFlight = new Map<IncomingMessage, InFlight>();
  #watchdog: NodeJS.Timeout | undefined;

  constructor(options: ForwarderOptions) {
    this.#options = options;
    this.#proxy.on('proxyReq', (upstream: ClientRequest, req: IncomingMessage) => {
      const call = this.#inFlight.get(req);
      if (call !== undefined) call.upstream = upstream;
    });
  }

  /** Stops the watchdog and closes the kept-alive connections to nodes (calls still on them are cut). */
  close(): void {
    clearInterval(this.#watchdog);
    this.#watchdog = undefined;
    this.#proxy.close();
    this.#agent.destroy();
  }

  /** Routes one tRPC call (`procedure`, not batched): forwards it to its node, or says to serve it here. */
  async trpc(
    req: IncomingMessage,
    res: ServerResponse,
    procedure: string,
    client: ForwardedClient,
  ): Promise<ForwardOutcome> {
    const placing = PLACED_PROCEDURES.has(procedure) || PINNED_PROCEDURES.has(procedure);
    const key = this.#options.routed.get(procedure);
    if (!placing && key === undefined) return { kind: 'local' };
    const body = req.method === 'GET' || req.method === 'HEAD' ? null : await this.#readBody(req);
    const input = parseInput(req, body);
    let node: StoredNode;
    if (placing) {
      const hint = await this.#hint(req, procedure, input);
      // A pinned call naming nothing of the caller's: the replica answers (NOT_FOUND, as the node would).
      if (PINNED_PROCEDURES.has(procedure) && hint?.node === undefined) return local(req, body);
      const placed = await this.#placeOrPin(input, hint);
      if (placed instanceof AppError) return { kind: 'refused', error: placed };
      node = placed;
    } else {
      const value = (input as Record<string, unknown> | undefined)?.[key as RouteKey];
      const nodeId = typeof value === 'string' ? await this.#nodeIdOf(key as RouteKey, value) : undefined;
      // No such session or exec, or a malformed input: the replica answers (NOT_FOUND, or the schema's message).
      if (nodeId === undefined) return local(req, body);
      const found = await this.#node(nodeId);
      // A session's record and history are in the store: a replica still shows (or ends) them when its node is gone.
      if (found instanceof AppError && STORE_FALLBACK.has(procedure)) return local(req, body);
      if (found instanceof AppError) return { kind: 'refused', error: found };
      node = found;
    }
    this.#forward(req, res, node, body, client);
    return { kind: 'forwarded', nodeId: node.id };
  }

  /**
   * Routes one request of E2B's API (`/e2b/…`, or `/files` named by its `E2b-Sandbox-Id` header): a sandbox's
   * calls and its envd go to the node of the session it is (its id is the session's), a new sandbox is placed,
   * and the rest (the list) is served here from the store.
   */
  async e2b(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    client: ForwardedClient,
  ): Promise<ForwardOutcome> {
    const method = req.method ?? 'GET';
    const header = req.headers['e2b-sandbox-id'];
    const named = Array.isArray(header) ? header[0] : header;
    const rest = path.startsWith('/e2b') ? path.slice('/e2b'.length) || '/' : path;
    const inSandbox = /^\/(?:v2\/)?sandboxes\/([0-9a-f]{32})(?:\/[a-z]+)?$/.exec(rest)?.[1];
    const envd = rest === '/envd' || rest.startsWith('/envd/') || path === '/files';
    const creating = method === 'POST' && (rest === '/sandboxes' || rest === '/v2/sandboxes');
    const sandboxId = envd ? named : inSandbox;
    if (!creating && sandboxId === undefined) return { kind: 'local' };
    const body = method === 'GET' || method === 'HEAD' ? null : await this.#readBody(req);
    let node: StoredNode | AppError | undefined;
    if (creating) {
      node = await this.#placeOrPin({}, await this.#hint(req, 'e2b.create', parseInput(req, body)));
    } else {
      const sessionId = sessionIdOfSandbox(sandboxId as string);
      node = sessionId === undefined ? undefined : await this.nodeForSession(sessionId);
    }
    // An unknown sandbox: the replica answers in E2B's format (its own lookup finds nothing).
    if (node === undefined) return local(req, body);
    if (node instanceof AppError) return { kind: 'refused', error: node };
    this.#forward(req, res, node, body, client);
    return { kind: 'forwarded', nodeId: node.id };
  }

  /** Every node service, read at most once per `nodesTtlMs` (placement and routing read it on every call). */
  nodes(): Promise<StoredNode[]> {
    const now = Date.now();
    if (this.#nodes === undefined || now - this.#nodes.at > (this.#options.nodesTtlMs ?? 1000)) {
      const list = this.#options.store.listNodes();
      this.#nodes = { at: now, list };
      list.catch(() => {
        if (this.#nodes?.list === list) this.#nodes = undefined;
      });
    }
    return this.#nodes.list;
  }

  async #nodeIdOf(key: RouteKey, value: string): Promise<string | undefined> {
    if (key === 'sessionId') {
      const known = this.#sessionNodes.get(value);
      if (known !== undefined && Date.now() - known.at < SESSION_NODE_TTL_MS) return known.node;
      const node = (await this.#options.store.getSessionById(value))?.instanceId;
      if (node !== undefined) {
        if (this.#sessionNodes.size >= SESSION_NODE_CACHE) this.#sessionNodes.clear();
        this.#sessionNodes.set(value, { node, at: Date.now() });
      }
      return node;
    }
    const tag = execNodeTag(value);
    return tag === null
      ? undefined
      : (await this.nodes()).find((n) => nodeTag(n.id).toString('hex') === tag)?.id;
  }

  async #node(id: string): Promise<StoredNode | AppError> {
    const node = (await this.nodes()).find((n) => n.id === id);
    if (node === undefined) {
      return new AppError(
        'UNAVAILABLE',
        `the node that ran this session (${id}) is no longer in the cluster; destroy the session and create it again`,
      );
    }
    if (node.ageMs > this.#staleAfterMs) return silentNodeError(node);
    return node;
  }

  /** The caller's hint for a placed or pinned call; none when it cannot be worked out (the node then answers). */
  async #hint(req: IncomingMessage, procedure: string, input: unknown): Promise<PlacementHint | undefined> {
    if (this.#options.hints === undefined) return undefined;
    return this.#options.hints(req, procedure, input).catch((error: unknown) => {
      this.#options.logger.warn('placement hint failed; placing without it', { procedure, error });
      return undefined;
    });
  }

  /**
   * The node a placed call goes to: the one keeping what it names while that node answers, else one chosen by
   * placement (which, for a snapshot, serves it from a shared snapshot folder or says why it cannot).
   */
  async #placeOrPin(input: unknown, hint: PlacementHint | undefined): Promise<StoredNode | AppError> {
    if (hint?.node !== undefined) {
      const node = await this.#node(hint.node);
      if (!(node instanceof AppError)) return node;
    }
    return this.#place(input, hint?.template ?? null);
  }

  /**
   * Chooses a node ({@link placeSession}): every node has the operator's images, and a template's build (or a
   * build's base template) is on the nodes that report its digest.
   */
  async #place(input: unknown, template: string | null): Promise<StoredNode | AppError> {
    const given = (input ?? {}) as { backend?: unknown; resources?: { memoryMb?: unknown } };
    const backend = typeof given.backend === 'string' ? given.backend : 'auto';
    const memoryMb = given.resources?.memoryMb;
    const request: PlacementRequest = {
      backend,
      template,
      memoryBytes: typeof memoryMb === 'number' ? memoryMb * 1024 * 1024 : this.#options.defaultMemoryBytes,
    };
    const stored = await this.nodes();
    const now = Date.now();
    const records: NodeRecord[] = stored.map((n) => ({
      id: n.id,
      availability: n.availability,
      draining: n.draining,
      lastSeenAt: Math.max(0, Math.round(now - n.ageMs)),
      // `auto` takes whichever backend a node has.
      backends: backend === 'auto' && n.capacity.backends.length > 0 ? ['auto'] : n.capacity.backends,
      templates: n.capacity.templates,
      memoryTotalBytes: n.capacity.memoryTotalBytes,
      memoryFreeBytes: Math.min(n.capacity.memoryFreeBytes, n.capacity.memoryTotalBytes),
      cpus: n.capacity.cpus,
      load1: n.capacity.load1,
      sessions: n.liveSessions,
      maxSessions: n.capacity.maxSessions,
    }));
    const placed = placeSession(request, records, { now, random: this.#options.random ?? Math.random });
    if (!placed.ok) {
      return new AppError('BACKEND_UNAVAILABLE', placementRefusalMessage(placed.reasons, request));
    }
    return stored.find((n) => n.id === placed.nodeId) as StoredNode;
  }

  /**
   * The signature headers of a request to a node: the replica's MAC over the method, path with query, body and
   * the client it acts for ({@link signNodeRequest}), and that client.
   */
  signedHeaders(
    method: string,
    path: string,
    body: Buffer | null,
    client: ForwardedClient,
  ): Record<string, string> {
    const principal = encodeForwardedClient(client);
    const signature = signNodeRequest(this.#options.secret, {
      method,
      path,
      bodySha256: createHash('sha256')
        .update(body ?? Buffer.alloc(0))
        .digest('hex'),
      principal,
      at: Date.now(),
      nonce: randomBytes(16).toString('base64url'),
    });
    return { [NODE_AUTH_HEADER]: signature, [FORWARDED_CLIENT_HEADER]: principal };
  }

  /**
   * The node serving a preview-site host name: `<port>-<label>.<domain>` (a preview: the label is the session's,
   * looked up among live sessions) or `<port>-<sandbox id>.<domain>` (an E2B sandbox: its id is its session's).
   */
  async nodeForPreviewHost(
    host: string | undefined,
    domain: string,
  ): Promise<StoredNode | AppError | undefined> {
    const e2b = e2bHostOf(host, domain);
    let sessionId = e2b === undefined ? undefined : sessionIdOfSandbox(e2b.sandboxId);
    if (e2b === undefined) {
      const m = /^[1-9][0-9]{0,4}-([0-9a-f]{16})\.(.+)$/.exec(requestHostName(host) ?? '');
      if (!m || m[2] !== domain) return undefined;
      sessionId = await this.#sessionOfLabel(m[1] as string);
    }
    return sessionId === undefined ? undefined : this.nodeForSession(sessionId);
  }

  async #sessionOfLabel(label: string): Promise<string | undefined> {
    const known = this.#labels.get(label);
    if (known !== undefined || Date.now() - this.#labelsAt < 1000) return known;
    this.#labelsAt = Date.now();
    const live = await this.#options.store.listLiveSessions();
    this.#labels = new Map(live.map((s) => [previewHostLabel(s.id), s.id]));
    return this.#labels.get(label);
  }

  /** The live node running session `sessionId`; undefined when there is no such session; why it cannot be reached. */
  async nodeForSession(sessionId: string): Promise<StoredNode | AppError | undefined> {
    const nodeId = await this.#nodeIdOf('sessionId', sessionId);
    return nodeId === undefined ? undefined : this.#node(nodeId);
  }

  #forward(
    req: IncomingMessage,
    res: ServerResponse,
    node: StoredNode,
    body: Buffer | null,
    client: ForwardedClient,
    retried = false,
  ): void {
    const call: InFlight = { node: node.id, res };
    this.#inFlight.set(req, call);
    res.once('close', () => this.#inFlight.delete(req));
    this.#startWatchdog();
    Object.assign(req.headers, this.signedHeaders(req.method ?? 'GET', req.url ?? '/', body, client));
    if (body !== null) req.headers['content-length'] = String(body.byteLength);
    delete req.headers['transfer-encoding'];
    this.#proxy.web(
      req,
      res,
      {
        target: node.url,
        // A retry sends the body read earlier (a GET's request stream has ended by then, so it sends nothing), on
        // a connection of its own: the agent's other idle connections to that node may be closing too.
        ...(body === null && !retried ? {} : { buffer: Readable.from([body ?? Buffer.alloc(0)]) }),
        ...(retried ? { agent: false } : {}),
      },
      (error: NodeJS.ErrnoException) => {
        // The node closed a kept-alive connection just as this call went down it: it never read the call (no
        // answer came), so the call goes once more, on a new connection.
        if (
          !retried &&
          call.ended === undefined &&
          !res.headersSent &&
          call.upstream?.reusedSocket === true &&
          RESET_ON_REUSE.has(error.code ?? '')
        ) {
          this.#inFlight.delete(req);
          this.#forward(req, res, node, body, client, true);
          return;
        }
        if (call.ended === undefined)
          this.#options.logger.warn('forwarding to a node failed', { node: node.id, error: error.message });
        endCall(
          res,
          call.ended?.message ?? `the node running this session (${node.id}) did not answer; retry shortly`,
        );
      },
    );
  }

  get #staleAfterMs(): number {
    return this.#options.staleAfterMs ?? DEFAULT_NODE_STALE_AFTER_MS;
  }

  /** While calls are in flight, ends those whose node has stopped reporting (see {@link Forwarder.#inFlight}). */
  #startWatchdog(): void {
    if (this.#watchdog !== undefined) return;
    this.#watchdog = setInterval(() => {
      if (this.#inFlight.size === 0) {
        clearInterval(this.#watchdog);
        this.#watchdog = undefined;
        return;
      }
      this.nodes().then(
        (nodes) => {
          const silent = new Map(
            nodes.filter((n) => n.ageMs > this.#staleAfterMs).map((n) => [n.id, silentNodeError(n)]),
          );
          for (const call of this.#inFlight.values()) {
            const error = silent.get(call.node);
            if (error === undefined || call.ended !== undefined) continue;
            call.ended = error;
            this.#options.logger.warn('ended a call to a node that stopped reporting', { node: call.node });
            // Ending the request to the node reaches the proxy's error callback, which answers the client; a
            // request still connecting has no socket yet: answer here (its error comes later and finds it sent).
            if (call.upstream) call.upstream.destroy(new Error(error.message));
            else endCall(call.res, error.message);
          }
        },
        () => undefined, // the store is unreachable: try again at the next tick
      );
    }, this.#options.watchdogMs ?? 2000);
    this.#watchdog.unref();
  }

  async #readBody(req: IncomingMessage): Promise<Buffer> {
    const limit = this.#options.maxBodyBytes;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.byteLength;
      if (size > limit)
        throw new AppError('INPUT_TOO_LARGE', `the request body is larger than ${limit} bytes`);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }
}

/** Why a node that has not reported for a while is not called. */
function silentNodeError(node: StoredNode): AppError {
  return new AppError(
    'UNAVAILABLE',
    `the node running this session (${node.id}) has not been heard from for ${Math.round(node.ageMs / 1000)} s; retry shortly, and if it does not come back, restore the session from a snapshot`,
    { retryAfterSeconds: 5 },
  );
}

/** Answers a forwarded call its node did not: 502 with `message` (a stream already under way is cut). */
function endCall(res: ServerResponse, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.statusCode = 502;
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Retry-After', '5');
  res.end(
    JSON.stringify({
      error: {
        message,
        code: -32603,
        data: { code: 'BAD_GATEWAY', httpStatus: 502, studioCode: 'UNAVAILABLE', path: null },
      },
    }),
  );
}

/** The call's input: `?input=` of a GET, the JSON body of a POST; undefined when absent or not JSON. */
function parseInput(req: IncomingMessage, body: Buffer | null): unknown {
  try {
    if (body === null) {
      const raw = new URLSearchParams((req.url ?? '').split('?')[1] ?? '').get('input');
      return raw === null ? undefined : JSON.parse(raw);
    }
    return body.byteLength === 0 ? undefined : JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** Serve here a call whose body was read: tRPC (and the fast path) take a read body from `req.body`. */
function local(req: IncomingMessage, body: Buffer | null): ForwardOutcome {
  if (body !== null) (req as IncomingMessage & { body?: string }).body = body.toString('utf8');
  return { kind: 'local' };
}
