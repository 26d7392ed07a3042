import type { AppRouter } from '@studio/api';
import type { inferRouterInputs, inferRouterOutputs } from '@trpc/server';
import { type StudioClient, type StudioClientError, toStudioClientError } from './index.ts';

/** What exec.start takes: exec.run's input, plus `keepStdinOpen` for exec.write / exec.closeStdin. */
export type ExecStartInput = inferRouterInputs<AppRouter>['exec']['start'];

/** What exec.run takes (`idempotencyKey` included). */
export type ExecRunInput = inferRouterInputs<AppRouter>['exec']['run'];

/** What exec.run returns. */
export type ExecRunResult = inferRouterOutputs<AppRouter>['exec']['run'];

/** What a streamed exec yields: `started` (with the id for exec.write), then output chunks, then `exit`. */
export type ExecStreamEvent =
  | { type: 'started'; execId: string }
  | { type: 'stdout' | 'stderr'; data: string }
  | {
      type: 'exit';
      exitCode: number | null;
      signal: string | null;
      timedOut: boolean;
      truncated: boolean;
      oomKilled: boolean;
      durationMs: number;
    };

/** Callbacks of {@link streamExec}. */
export interface StreamExecHandlers {
  /** Each event once, in order, across reconnects. */
  onData?: (event: ExecStreamEvent) => void;
  /** The start was refused or the stream failed (a {@link StudioClientError} with the API's code). */
  onError?: (error: StudioClientError) => void;
  /** The stream ended (after `exit`). */
  onComplete?: () => void;
  /** The connection failed and the helper attaches again, resuming after `lastEventId`. */
  onReconnect?: (info: { lastEventId: string | undefined; attempt: number }) => void;
}

/** Options of {@link streamExec}. */
export interface StreamExecOptions {
  /**
   * How long the helper keeps trying to start (a retried exec.start carries the same idempotency key, so it
   * starts nothing twice) and to re-attach after a failed connection, in ms; default 30 s, the server's attach
   * window.
   */
  retryForMs?: number;
}

/** A streamed exec from {@link streamExec}. */
export interface StreamedExec {
  /** The exec's id once started (for exec.write / exec.closeStdin). */
  readonly execId: string | undefined;
  /** The id of the last event delivered; what a reconnect resumes after. */
  readonly lastEventId: string | undefined;
  /** Stops reading and kills the command unless it has ended (exec.cancel). */
  unsubscribe(): void;
}

/** A fresh idempotency key (a UUID). */
export function newIdempotencyKey(): string {
  return globalThis.crypto.randomUUID();
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Worth trying again with the same key or lastEventId: the request may not have arrived, or the server was
// restarting. A refusal (a 4xx code) never is.
const transient = (error: StudioClientError) =>
  error.code === 'NETWORK' ||
  error.trpcCode === 'INTERNAL_SERVER_ERROR' ||
  error.trpcCode === 'SERVICE_UNAVAILABLE' ||
  error.trpcCode === 'BAD_GATEWAY' ||
  error.trpcCode === 'GATEWAY_TIMEOUT';

/**
 * Runs `exec.run` with an idempotency key (the input's, or a new one) and retries it on transient failures
 * (no answer, 5xx) for up to `retryForMs` (default 30 s): the command runs once, however many attempts it took.
 */
export async function runExec(
  client: StudioClient,
  input: ExecRunInput,
  options: { retryForMs?: number } = {},
): Promise<ExecRunResult> {
  const call = { ...input, idempotencyKey: input.idempotencyKey ?? newIdempotencyKey() };
  const until = Date.now() + (options.retryForMs ?? 30_000);
  for (let attempt = 0; ; attempt++) {
    try {
      return await client.exec.run.mutate(call);
    } catch (error) {
      const e = toStudioClientError(error);
      if (!transient(e) || Date.now() > until) throw e;
      await delay(Math.min(2000, 100 * 2 ** attempt));
    }
  }
}

/**
 * Runs a command and streams its events exactly once: `exec.start` (a POST, with an idempotency key so a retried
 * start starts nothing twice) starts it and returns a stream token bound to that exec; `exec.stream` (SSE) reads
 * its `started`, `stdout`/`stderr` and `exit` events, each with an id. When the connection drops, the SSE link
 * reconnects by itself and the server resumes after the last event it sent; if the link gives up, this helper
 * attaches again with `lastEventId` (for up to `retryForMs`). Either way each event reaches `onData` once and
 * the command never starts again. `unsubscribe()` stops reading and kills the command (`exec.cancel`).
 * Subscriptions need the client's `EventSource` option in Node (see the README).
 *
 * ```ts
 * const run = streamExec(client, { sessionId, command: ['npm', 'test'] }, { onData: (e) => console.log(e) });
 * // later: run.unsubscribe()
 * ```
 */
export function streamExec(
  client: StudioClient,
  input: ExecStartInput,
  handlers: StreamExecHandlers = {},
  options: StreamExecOptions = {},
): StreamedExec {
  const retryForMs = options.retryForMs ?? 30_000;
  let stopped = false;
  let ended = false;
  let execId: string | undefined;
  let lastSeq = 0;
  let lastEventId: string | undefined;
  let sub: { unsubscribe(): void } | undefined;
  let attempt = 0;
  // Deliver each event once, in order, whatever the transport replays.
  const deliver = (tracked: { id: string; data: ExecStreamEvent }) => {
    const seq = Number(tracked.id);
    if (!(seq > lastSeq)) return;
    lastSeq = seq;
    lastEventId = tracked.id;
    if (tracked.data.type === 'exit') ended = true;
    handlers.onData?.(tracked.data);
  };
  const fail = (error: StudioClientError) => {
    if (stopped) return;
    stopped = true;
    handlers.onError?.(error);
  };

  const attach = (started: { execId: string; token: string }, failedSince: number | undefined) => {
    if (stopped) return;
    sub = client.exec.stream.subscribe(
      { execId: started.execId, token: started.token, ...(lastEventId ? { lastEventId } : {}) },
      {
        onData: (tracked) => {
          failedSince = undefined;
          deliver(tracked);
        },
        onError: (raw) => {
          const error = toStudioClientError(raw);
          const since = failedSince ?? Date.now();
          if (stopped || ended || !transient(error) || Date.now() - since > retryForMs) return fail(error);
          attempt++;
          handlers.onReconnect?.({ lastEventId, attempt });
          void delay(Math.min(2000, 100 * 2 ** Math.min(attempt, 5))).then(() => attach(started, since));
        },
        onComplete: () => {
          if (!stopped) handlers.onComplete?.();
        },
      },
    );
  };

  const start = async () => {
    const call = { ...input, idempotencyKey: input.idempotencyKey ?? newIdempotencyKey() };
    const until = Date.now() + retryForMs;
    for (let n = 0; ; n++) {
      try {
        return await client.exec.start.mutate(call);
      } catch (error) {
        const e = toStudioClientError(error);
        if (stopped || !transient(e) || Date.now() > until) throw e;
        await delay(Math.min(2000, 100 * 2 ** n));
      }
    }
  };

  start().then(
    (started) => {
      execId = started.execId;
      if (stopped) {
        void client.exec.cancel.mutate({ execId: started.execId }).catch(() => undefined);
        return;
      }
      attach(started, undefined);
    },
    (error: unknown) => fail(toStudioClientError(error)),
  );
  return {
    get execId() {
      return execId;
    },
    get lastEventId() {
      return lastEventId;
    },
    unsubscribe() {
      if (stopped) return;
      stopped = true;
      sub?.unsubscribe();
      if (execId !== undefined && !ended) {
        void client.exec.cancel.mutate({ execId }).catch(() => undefined);
      }
    },
  };
}
