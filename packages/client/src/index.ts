import type { AppRouter } from '@studio/api';
import {
  createTRPCClient,
  httpLink,
  httpSubscriptionLink,
  splitLink,
  type TRPCClient,
  TRPCClientError,
} from '@trpc/client';
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
   * The EventSource class for subscriptions (`events.subscribe`, `exec.stream`), which run over server-sent
   * events. Default the global one, which cannot send headers: the API refuses it a login cookie without the
   * IDE's proof header. Pass the `eventsource` package's class (v3+, Node and browsers): it gets `token` as a
   * bearer header, and `headers`, through its `fetch` option.
   */
  EventSource?: EventSourceConstructor;
}

/** The constructor shape tRPC's SSE link needs (the global EventSource, or the `eventsource` package's). */
// biome-ignore lint/suspicious/noExplicitAny: any EventSource-compatible class
export type EventSourceConstructor = new (url: string, init?: any) => EventSource;

/** The typed client: `client.sessions.create.mutate({ image })`, `client.files.read.query({ … })`, … */
export type StudioClient = TRPCClient<AppRouter>;

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
  const client = createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        true: httpSubscriptionLink({
          url: `${base}/trpc`,
          ...(options.EventSource ? { EventSource: options.EventSource } : {}),
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
 * Signs in with a username and password and returns a client using the resulting JWT (valid up to 4 h).
 */
export async function loginStudioClient(options: {
  url: string;
  username: string;
  password: string;
  fetch?: typeof globalThis.fetch;
}): Promise<{ client: StudioClient; token: string; expiresAt: string }> {
  const anonymous = createStudioClient({
    url: options.url,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  const { token, expiresAt } = await anonymous.auth.login.mutate({
    username: options.username,
    password: options.password,
  });
  return {
    client: createStudioClient({
      url: options.url,
      token,
      ...(options.fetch ? { fetch: options.fetch } : {}),
    }),
    token,
    expiresAt,
  };
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
