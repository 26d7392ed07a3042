import { isIsolationError } from '@studio/isolation';
import type { PolicySchemas } from '@studio/policy';
import { z } from 'zod';
import { auditOf, type Context } from '../core/context.ts';
import { toTRPCError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { authedProcedure, principalOf, router, sessionMutationProcedure } from '../core/trpc.ts';
import { actorOf } from '../realtime/event-bus.ts';
import { Pipe, StdinQueue } from './exec-registry.ts';

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
  .describe('an id from exec.start');

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

// exec.stream reads an exec that exec.start started, with the token exec.start returned (and nothing else).
const streamReadInput = z.object({
  execId: execIdSchema,
  token: z
    .string()
    .regex(/^[A-Za-z0-9_-]{43}$/)
    .describe('the stream token exec.start returned'),
});

/** Exec procedures; `schemas` are the policy's, bound to the running limits. */
export const execRouter = (schemas: PolicySchemas) => {
  // exec.start takes exec.run's input and may keep stdin open for exec.write / exec.closeStdin.
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
     * Starts argv in the session (a POST: GETs never start anything, SECURITY.md §4b) and returns its `execId`
     * and a stream `token` for exec.stream, which reads its output. The command runs at most once; if no reader
     * attaches within 30 s (or the last one leaves and none comes back within 30 s) it is killed. Output waiting
     * for a reader is capped by the policy's `exec.maxOutputBytes`. With `keepStdinOpen`, stdin stays open for
     * exec.write until exec.closeStdin.
     */
    start: sessionMutationProcedure
      .input(streamInput)
      .output(z.object({ execId: z.string(), token: z.string(), attachBy: z.string() }))
      .mutation(async ({ ctx, input }) => {
        const limits = ctx.deps.policy.exec;
        const userId = ctx.principal.userId;
        const sandbox = await ctx.deps.sessions.withSandbox(userId, input.sessionId, auditOf(ctx), (s) =>
          Promise.resolve(s),
        );
        const publish = publishExec(ctx, input.sessionId);
        const execId = newId('exe_');
        const stdin = new StdinQueue(limits.maxStdinBytes);
        if (input.stdin !== undefined && input.stdin.length > 0)
          stdin.push(new TextEncoder().encode(input.stdin));
        if (input.keepStdinOpen !== true) stdin.close();
        const abort = new AbortController();
        const pipe = new Pipe<ExecStreamEvent>();
        const decode = utf8Streams();
        const { token, attachBy } = ctx.deps.execs.addStream(execId, {
          ownerId: userId,
          sessionId: input.sessionId,
          ...(input.keepStdinOpen === true ? { stdin } : {}),
          output: pipe,
          cancel: () => abort.abort(),
        });
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
              const cancelled = isIsolationError(error, 'CANCELLED');
              void ctx.deps.sessions.noteSandboxFailure(input.sessionId, error).catch(() => undefined);
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
          )
          .finally(() => {
            // Its stdin closes with it; the output stays readable until the reader has it or the window ends.
            stdin.close();
          });
        return { execId, token, attachBy: attachBy.toISOString() };
      }),

    /**
     * Reads a started exec (exec.start's `execId` and `token`; yours only, another user's or a wrong token is
     * NOT_FOUND): `{ type: 'started', execId }`, then `{ type: 'stdout' | 'stderr', data }` chunks (UTF-8 text,
     * decoded across chunk boundaries; invalid bytes become U+FFFD), then one `exit` event. One reader at a time;
     * a reader that reconnects within 30 s goes on where the last one stopped. It starts and changes nothing.
     */
    stream: authedProcedure.input(streamReadInput).subscription(async function* ({
      ctx,
      input,
      signal,
    }): AsyncGenerator<ExecStreamEvent> {
      const execs = ctx.deps.execs;
      let pipe: Pipe<ExecStreamEvent>;
      try {
        pipe = execs.attach(ctx.principal.userId, input.execId, input.token) as Pipe<ExecStreamEvent>;
      } catch (error) {
        // Errors inside a subscription skip the procedure middleware: map them here.
        throw toTRPCError(error);
      }
      const stop = new AbortController();
      const onAbort = () => stop.abort();
      signal?.addEventListener('abort', onAbort, { once: true });
      let failed = false;
      try {
        yield { type: 'started', execId: input.execId };
        yield* pipe.drain(stop.signal);
      } catch (error) {
        failed = true;
        throw toTRPCError(error);
      } finally {
        signal?.removeEventListener('abort', onAbort);
        // Read to the end: forget it. Left early: it waits for a reader to come back.
        if (failed || pipe.done) execs.delete(input.execId);
        else execs.detach(input.execId);
      }
    }),

    /** Kills a started exec now (yours only). Its reader gets no `exit` event; events show it cancelled. */
    cancel: sessionMutationProcedure
      .input(z.strictObject({ execId: execIdSchema }))
      .mutation(({ ctx, input }) => {
        ctx.deps.execs.cancel(ctx.principal.userId, input.execId);
        return { execId: input.execId };
      }),

    /** Writes to the stdin of a running exec started with `keepStdinOpen` (yours only). */
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
        const stdin = ctx.deps.execs.stdinOf(ctx.principal.userId, input.execId);
        const bytes = new TextEncoder().encode(input.data);
        stdin.push(bytes);
        return { execId: input.execId, bytes: bytes.byteLength };
      }),

    /** Closes the stdin of a running exec (the process sees end of file). */
    closeStdin: sessionMutationProcedure
      .input(z.strictObject({ execId: execIdSchema }))
      .mutation(({ ctx, input }) => {
        ctx.deps.execs.stdinOf(ctx.principal.userId, input.execId).close();
        return { execId: input.execId };
      }),
  });
};
