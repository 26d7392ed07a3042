import { isIsolationError } from '@studio/isolation';
import type { PolicySchemas } from '@studio/policy';
import { z } from 'zod';
import { auditOf, type Context } from '../core/context.ts';
import { toTRPCError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { principalOf, router, sessionMutationProcedure } from '../core/trpc.ts';
import { actorOf } from '../realtime/event-bus.ts';
import { StdinQueue } from './exec-registry.ts';

const text = new TextDecoder('utf-8');

/** What `exec.stream` yields: first `started` (with the id for exec.write), then chunks, then `exit`. */
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

const execIdSchema = z
  .string()
  .regex(/^exe_[A-Za-z0-9_-]{22}$/)
  .describe('an id from the `started` event of exec.stream');

/**
 * A FIFO an async generator can wait on; ends on `end()` or when `signal` aborts. Unbounded itself: what goes
 * in is exec output, which the backend caps at the policy's `exec.maxOutputBytes`.
 */
class Pipe<T> {
  readonly #items: T[] = [];
  #done = false;
  #error: unknown;
  #wake: (() => void) | undefined;

  push(item: T): void {
    this.#items.push(item);
    this.#wake?.();
  }
  end(error?: unknown): void {
    this.#done = true;
    this.#error = error;
    this.#wake?.();
  }
  async *drain(signal: AbortSignal): AsyncGenerator<T> {
    const onAbort = () => this.#wake?.();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        const item = this.#items.shift();
        if (item !== undefined) {
          yield item;
          continue;
        }
        if (this.#done) {
          if (this.#error !== undefined) throw this.#error;
          return;
        }
        if (signal.aborted) return;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        this.#wake = undefined;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }
}

function utf8Streams() {
  const out = new TextDecoder('utf-8');
  const err = new TextDecoder('utf-8');
  return {
    stdout: (c: Uint8Array) => out.decode(c, { stream: true }),
    stderr: (c: Uint8Array) => err.decode(c, { stream: true }),
  };
}

function publishExec(ctx: Context, sessionId: string) {
  const actor = actorOf(principalOf(ctx));
  return (body: Parameters<Context['deps']['events']['publish']>[2]) =>
    ctx.deps.events.publish(sessionId, actor, body);
}

/** Exec procedures; `schemas` are the policy's, bound to the running limits. */
export const execRouter = (schemas: PolicySchemas) => {
  // exec.stream takes exec.run's input and may keep stdin open for exec.write / exec.closeStdin.
  const streamInput = schemas.execRunInput.extend({ keepStdinOpen: z.boolean().optional() });
  return router({
    /**
     * Runs argv (no shell) in the session and returns when it ends: exit code, output (UTF-8, lossy), duration,
     * and whether it timed out or its output was cut. Timeout and output cap come from the policy.
     */
    run: sessionMutationProcedure.input(schemas.execRunInput).mutation(({ ctx, input }) => {
      const limits = ctx.deps.policy.exec;
      return ctx.deps.sessions.withSandbox(
        ctx.principal.userId,
        input.sessionId,
        auditOf(ctx),
        async (sandbox) => {
          const publish = publishExec(ctx, input.sessionId);
          const execId = newId('exe_');
          const decode = utf8Streams();
          publish({ type: 'exec.started', execId, command: [...input.command] });
          const result = await sandbox
            .exec(input.command, {
              ...(input.cwd ? { cwd: input.cwd } : {}),
              ...(input.env ? { env: input.env } : {}),
              ...(input.stdin !== undefined ? { stdin: input.stdin } : {}),
              timeoutMs: input.timeoutMs ?? limits.defaultTimeoutMs,
              maxOutputBytes: limits.maxOutputBytes,
              onStdout: (c) =>
                publish({
                  type: 'exec.output',
                  execId,
                  stream: 'stdout',
                  data: decode.stdout(c),
                  truncated: false,
                }),
              onStderr: (c) =>
                publish({
                  type: 'exec.output',
                  execId,
                  stream: 'stderr',
                  data: decode.stderr(c),
                  truncated: false,
                }),
            })
            .catch((error: unknown) => {
              publish({
                type: 'exec.exited',
                execId,
                exitCode: null,
                signal: null,
                timedOut: false,
                cancelled: isIsolationError(error, 'CANCELLED'),
              });
              throw error;
            });
          publish({
            type: 'exec.exited',
            execId,
            exitCode: result.exitCode,
            signal: result.signal,
            timedOut: result.timedOut,
            cancelled: false,
          });
          return {
            exitCode: result.exitCode,
            signal: result.signal,
            stdout: text.decode(result.stdout),
            stderr: text.decode(result.stderr),
            durationMs: result.durationMs,
            timedOut: result.timedOut,
            truncated: result.truncated,
            oomKilled: result.oomKilled,
          };
        },
      );
    }),

    /**
     * Runs argv and streams it: `{ type: 'started', execId }`, then `{ type: 'stdout' | 'stderr', data }` chunks
     * (UTF-8 text, decoded across chunk boundaries; invalid bytes become U+FFFD), then one `exit` event.
     * Unsubscribing cancels: the process group is killed. Output is capped by the policy's `exec.maxOutputBytes`
     * (so is what waits for a slow reader). With `keepStdinOpen`, stdin stays open for exec.write until
     * exec.closeStdin.
     */
    stream: sessionMutationProcedure.input(streamInput).subscription(async function* ({
      ctx,
      input,
      signal,
    }): AsyncGenerator<ExecStreamEvent> {
      const limits = ctx.deps.policy.exec;
      const userId = ctx.principal.userId;
      // Errors inside a subscription skip the procedure middleware: map them here.
      const sandbox = await ctx.deps.sessions
        .withSandbox(userId, input.sessionId, auditOf(ctx), (s) => Promise.resolve(s))
        .catch((error: unknown) => {
          throw toTRPCError(error);
        });
      const publish = publishExec(ctx, input.sessionId);
      const execId = newId('exe_');
      const stdin = new StdinQueue(limits.maxStdinBytes);
      if (input.stdin !== undefined && input.stdin.length > 0)
        stdin.push(new TextEncoder().encode(input.stdin));
      if (input.keepStdinOpen === true) {
        ctx.deps.execs.add(execId, { ownerId: userId, sessionId: input.sessionId, stdin });
      } else {
        stdin.close();
      }
      const abort = new AbortController();
      const cancel = () => abort.abort();
      signal?.addEventListener('abort', cancel, { once: true });
      const pipe = new Pipe<ExecStreamEvent>();
      const decode = utf8Streams();
      let cancelled = false;
      publish({ type: 'exec.started', execId, command: [...input.command] });
      const onChunk = (stream: 'stdout' | 'stderr') => (c: Uint8Array) => {
        const data = decode[stream](c);
        if (data.length === 0) return;
        pipe.push({ type: stream, data });
        publish({ type: 'exec.output', execId, stream, data, truncated: false });
      };
      sandbox
        .exec(input.command, {
          ...(input.cwd ? { cwd: input.cwd } : {}),
          ...(input.env ? { env: input.env } : {}),
          stdin,
          timeoutMs: input.timeoutMs ?? limits.defaultTimeoutMs,
          maxOutputBytes: limits.maxOutputBytes,
          onStdout: onChunk('stdout'),
          onStderr: onChunk('stderr'),
          signal: abort.signal,
        })
        .then(
          (r) => {
            publish({
              type: 'exec.exited',
              execId,
              exitCode: r.exitCode,
              signal: r.signal,
              timedOut: r.timedOut,
              cancelled: false,
            });
            pipe.push({
              type: 'exit',
              exitCode: r.exitCode,
              signal: r.signal,
              timedOut: r.timedOut,
              truncated: r.truncated,
              oomKilled: r.oomKilled,
              durationMs: r.durationMs,
            });
            pipe.end();
          },
          (error: unknown) => {
            cancelled = isIsolationError(error, 'CANCELLED');
            publish({
              type: 'exec.exited',
              execId,
              exitCode: null,
              signal: null,
              timedOut: false,
              cancelled,
            });
            pipe.end(cancelled ? undefined : error);
          },
        );
      try {
        yield { type: 'started', execId };
        yield* pipe.drain(abort.signal);
      } catch (error) {
        throw toTRPCError(error);
      } finally {
        signal?.removeEventListener('abort', cancel);
        abort.abort();
        ctx.deps.execs.delete(execId);
      }
    }),

    /** Writes to the stdin of a running exec.stream started with `keepStdinOpen` (yours only). */
    write: sessionMutationProcedure
      .input(
        z.strictObject({
          execId: execIdSchema,
          data: z
            .string()
            .min(1)
            .max(1024 * 1024),
        }),
      )
      .mutation(({ ctx, input }) => {
        const entry = ctx.deps.execs.get(ctx.principal.userId, input.execId);
        const bytes = new TextEncoder().encode(input.data);
        entry.stdin.push(bytes);
        return { execId: input.execId, bytes: bytes.byteLength };
      }),

    /** Closes the stdin of a running exec.stream (the process sees end of file). */
    closeStdin: sessionMutationProcedure
      .input(z.strictObject({ execId: execIdSchema }))
      .mutation(({ ctx, input }) => {
        ctx.deps.execs.get(ctx.principal.userId, input.execId).stdin.close();
        ctx.deps.execs.delete(input.execId);
        return { execId: input.execId };
      }),
  });
};
