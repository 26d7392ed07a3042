import type { AppRouter } from '@studio/api';
import type { inferRouterInputs } from '@trpc/server';
import { type StudioClient, type StudioClientError, toStudioClientError } from './index.ts';

/** What exec.start takes: exec.run's input, plus `keepStdinOpen` for exec.write / exec.closeStdin. */
export type ExecStartInput = inferRouterInputs<AppRouter>['exec']['start'];

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
  onData?: (event: ExecStreamEvent) => void;
  /** The start was refused or the stream failed (a {@link StudioClientError} with the API's code). */
  onError?: (error: StudioClientError) => void;
  /** The stream ended (after `exit`). */
  onComplete?: () => void;
}

/**
 * Runs a command and streams it, as `exec.stream` did before it became read-only: `exec.start` (a POST) starts
 * the command and returns a stream token bound to that one exec; `exec.stream({ execId, token })` (SSE) reads its
 * `started`, `stdout`/`stderr` and `exit` events. `unsubscribe()` stops reading and kills the command
 * (`exec.cancel`). Subscriptions need the client's `EventSource` option in Node (see the README).
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
): { unsubscribe(): void } {
  let stopped = false;
  let execId: string | undefined;
  let sub: { unsubscribe(): void } | undefined;
  let ended = false;
  client.exec.start.mutate(input).then(
    (started) => {
      execId = started.execId;
      if (stopped) {
        void client.exec.cancel.mutate({ execId: started.execId }).catch(() => undefined);
        return;
      }
      sub = client.exec.stream.subscribe(
        { execId: started.execId, token: started.token },
        {
          onData: (event) => {
            if (event.type === 'exit') ended = true;
            handlers.onData?.(event);
          },
          onError: (error) => handlers.onError?.(toStudioClientError(error)),
          onComplete: () => handlers.onComplete?.(),
        },
      );
    },
    (error: unknown) => {
      if (!stopped) handlers.onError?.(toStudioClientError(error));
    },
  );
  return {
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
