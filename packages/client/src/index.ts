import type { AppRouter } from '@studio/api';
import {
  createTRPCClient,
  httpLink,
  httpSubscriptionLink,
  splitLink,
  type TRPCClient,
  TRPCClientError,
} from '@trpc/client';
import type { inferRouterInputs, inferRouterOutputs } from '@trpc/server';
import type { StudioErrorCodeOrUnknown } from './error-codes.ts';

export type { StudioErrorCode, StudioErrorCodeOrUnknown } from './error-codes.ts';
export {
  type OpenTerminalOptions,
  openTerminal,
  type StudioTerminal,
  type TerminalServerMessage,
  type WebSocketLike,
} from './terminal.ts';

/**
 * The API's router type, for typed integrations such as `@trpc/tanstack-react-query` in the web app. A type
 * only: importing it bundles nothing of the server.
 */
export type { AppRouter };

/** Options for {@link createStudioClient}. */
export interface StudioClientOptions {
  /** The API's base URL, e.g. `http://127.0.0.1:4000` (tRPC is served under `/trpc`). */
  url: string;
  /** A login JWT (from `auth.login`) or an API token (`sst_…`, from `tokens.create`). */
  token?: string | undefined;
  /** A fetch implementation; default the global one. */
  fetch?: typeof globalThis.fetch;
  /** Extra headers on every request (never put credentials here; use `token`). */
  headers?: Record<string, string>;
  /**
   * The EventSource class for subscriptions (`events.subscribe`, `exec.stream`, `streamExec`), which run over
   * server-sent events. Default `globalThis.EventSource` (browsers; Node 20 has none), which cannot send headers:
   * it carries neither `token` nor `headers`, only a browser's cookie. Pass the `eventsource` package's class
   * (v3+, Node and browsers: `import { EventSource } from 'eventsource'`): it gets `token` as a bearer header,
   * and `headers`, through its `fetch` option.
   */
  EventSource?: EventSourceConstructor;
}

/** Options for {@link loginStudioClient}: those of {@link createStudioClient}, with a password for the token. */
export interface LoginStudioClientOptions extends Omit<StudioClientOptions, 'token'> {
  username: string;
  password: string;
}

/**
 * What the client uses of an EventSource (what tRPC's SSE link uses). Declared here rather than as the DOM's
 * `EventSource`, which Node 20's types and a project without the DOM library do not have.
 */
export interface EventSourceLike {
  readonly CLOSED: number;
  readonly CONNECTING: number;
  readonly OPEN: number;
  readonly readyState: number;
  // biome-ignore lint/suspicious/noExplicitAny: each implementation types its events its own way
  addEventListener(type: string, listener: (event: any) => void): void;
  // biome-ignore lint/suspicious/noExplicitAny: as above
  removeEventListener(type: string, listener: (event: any) => void): void;
  close(): void;
}

/** The constructor shape tRPC's SSE link needs (the global EventSource, or the `eventsource` package's). */
// biome-ignore lint/suspicious/noExplicitAny: any EventSource-compatible class, whatever its init options
export type EventSourceConstructor = new (url: string, init?: any) => EventSourceLike;

/** The typed client: `client.sessions.create.mutate({ image })`, `client.files.read.query({ … })`, … */
export type StudioClient = TRPCClient<AppRouter>;

/** Each procedure's input, by path: `StudioInputs['sessions']['create']`. */
export type StudioInputs = inferRouterInputs<AppRouter>;

/** Each procedure's output as a call returns it, by path: `StudioOutputs['sessions']['get']`. */
export type StudioOutputs = inferRouterOutputs<AppRouter>;

/**
 * Every failure of a call: `code` is the API's stable Studio code (a {@link StudioErrorCode}: `PATH_TRAVERSAL`,
 * `SESSION_LIMIT`, `UNAUTHENTICATED`, `TOKEN_EXPIRED`, `RATE_LIMITED`, `EGRESS_DENIED`, …; see the API README),
 * `trpcCode` the tRPC code, `httpStatus` the HTTP status, `requestId` the server's id for this request (quote it
 * in bug reports). A transport failure (server unreachable) has code `NETWORK`.
 */
export class StudioClientError extends Error {
  override readonly name = 'StudioClientError';
  readonly code: StudioErrorCodeOrUnknown;
  readonly trpcCode: string | null;
  readonly httpStatus: number | null;
  readonly path: string | null;
  readonly requestId: string | null;

  constructor(
    message: string,
    fields: {
      code: StudioErrorCodeOrUnknown;
      trpcCode: string | null;
      httpStatus: number | null;
      path: string | null;
      requestId: string | null;
      cause?: unknown;
    },
  ) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.code = fields.code;
    this.trpcCode = fields.trpcCode;
    this.httpStatus = fields.httpStatus;
    this.path = fields.path;
    this.requestId = fields.requestId;
  }
}

/** True when `error` is a {@link StudioClientError}, optionally with the given Studio code. */
export function isStudioClientError(
  error: unknown,
  code?: StudioErrorCodeOrUnknown,
): error is StudioClientError {
  return error instanceof StudioClientError && (code === undefined || error.code === code);
}

interface ErrorData {
  code?: unknown;
  httpStatus?: unknown;
  studioCode?: unknown;
  path?: unknown;
  requestId?: unknown;
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/** Converts whatever a tRPC call threw into a {@link StudioClientError}. */
export function toStudioClientError(error: unknown): StudioClientError {
  if (error instanceof StudioClientError) return error;
  if (error instanceof TRPCClientError) {
    const data = (error.data ?? {}) as ErrorData;
    const trpcCode = str(data.code);
    const studioCode = str(data.studioCode) ?? trpcCode;
    return new StudioClientError(error.message, {
      code: studioCode ?? 'NETWORK',
      trpcCode,
      httpStatus: typeof data.httpStatus === 'number' ? data.httpStatus : null,
      path: str(data.path),
      requestId: str(data.requestId),
      cause: error,
    });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new StudioClientError(message, {
    code: 'NETWORK',
    trpcCode: null,
    httpStatus: null,
    path: null,
    requestId: null,
    cause: error,
  });
}

const CALLS = new Set(['query', 'mutate']);

interface SubscribeOptions {
  onError?: (error: unknown) => void;
}

// Wraps the tRPC proxy so that every query/mutate rejects with a StudioClientError; types are unchanged.
function wrap<T extends object>(target: T): T {
  return new Proxy(target, {
    get(obj, key, receiver) {
      const value: unknown = Reflect.get(obj, key, receiver);
      if (typeof key !== 'string') return value;
      if (CALLS.has(key) && typeof value === 'function') {
        return async (...args: unknown[]) => {
          try {
            return await (value as (...a: unknown[]) => Promise<unknown>).apply(obj, args);
          } catch (error) {
            throw toStudioClientError(error);
          }
        };
      }
      if (key === 'subscribe' && typeof value === 'function') {
        // Calling it subscribes (errors become StudioClientErrors); reading from it reaches a procedure
        // named `subscribe` (events.subscribe.subscribe).
        // Reflect.apply: `value.call` would be read through tRPC's proxy as a path segment.
        const call = (input: unknown, opts: SubscribeOptions = {}) =>
          Reflect.apply(value as (...a: unknown[]) => unknown, obj, [
            input,
            { ...opts, onError: (error: unknown) => opts.onError?.(toStudioClientError(error)) },
          ]);
        const inner = wrap(value as object);
        return new Proxy(call, { get: (_target, k) => Reflect.get(inner, k) });
      }
      if ((typeof value === 'object' || typeof value === 'function') && value !== null) {
        return wrap(value as object);
      }
      return value;
    },
  });
}

/**
 * A typed client of the Studio API. Authenticates with `token` as a bearer header; errors are
 * {@link StudioClientError}s carrying the API's codes.
 *
 * ```ts
 * const client = createStudioClient({ url: 'http://127.0.0.1:4000', token });
 * const session = await client.sessions.create.mutate({ image: 'studio-sandbox:latest' });
 * const run = await client.exec.run.mutate({ sessionId: session.id, command: ['node', '-v'] });
 * ```
 */
export function createStudioClient(options: StudioClientOptions): StudioClient {
  const base = options.url.replace(/\/+$/, '');
  if (!/^https?:\/\//.test(base)) {
    throw new StudioClientError('url must start with http:// or https://', {
      code: 'INPUT_INVALID',
      trpcCode: null,
      httpStatus: null,
      path: null,
      requestId: null,
    });
  }
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const EventSourceImpl =
    options.EventSource ?? globalEventSource() ?? (MissingEventSource as unknown as EventSourceConstructor);
  const client = createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        true: httpSubscriptionLink({
          url: `${base}/trpc`,
          EventSource: EventSourceImpl,
          eventSourceOptions: () => ({
            // Read by the `eventsource` package (browsers ignore it and send the cookie).
            fetch: (input: string | URL, init: RequestInit = {}) =>
              fetchImpl(input, {
                ...init,
                headers: { ...(init.headers as Record<string, string>), ...headers },
              }),
          }),
        }),
        false: httpLink({
          url: `${base}/trpc`,
          headers: () => headers,
          ...(options.fetch ? { fetch: options.fetch } : {}),
        }),
      }),
    ],
  });
  return wrap(client);
}

/**
 * Signs in with a username and password and returns a client using the resulting JWT (valid up to 4 h), made with
 * the same options (`EventSource`, `fetch`, `headers`).
 *
 * ```ts
 * import { EventSource } from 'eventsource'; // Node 20 has no global EventSource
 * const { client } = await loginStudioClient({ url, username: 'admin', password, EventSource });
 * ```
 */
export async function loginStudioClient(
  options: LoginStudioClientOptions,
): Promise<{ client: StudioClient; token: string; expiresAt: string }> {
  const { username, password, ...clientOptions } = options;
  const anonymous = createStudioClient(clientOptions);
  const { token, expiresAt } = await anonymous.auth.login.mutate({ username, password });
  return { client: createStudioClient({ ...clientOptions, token }), token, expiresAt };
}

function globalEventSource(): EventSourceConstructor | undefined {
  return (globalThis as { EventSource?: EventSourceConstructor }).EventSource;
}

// Without it tRPC's link fails at the first subscription with "opts.EventSource is not a constructor", which
// names neither the cause (Node 20 has no EventSource) nor the fix.
class MissingEventSource {
  constructor() {
    throw new Error(
      "no EventSource: this runtime has none (Node 20); pass one to createStudioClient or loginStudioClient, e.g. `import { EventSource } from 'eventsource'` and { EventSource }",
    );
  }
}

export {
  type ExecRunInput,
  type ExecRunResult,
  type ExecStartInput,
  type ExecStreamEvent,
  newIdempotencyKey,
  runExec,
  type StreamExecHandlers,
  type StreamExecOptions,
  type StreamedExec,
  streamExec,
} from './exec.ts';
