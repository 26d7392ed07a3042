import { isIsolationError } from '@studio/isolation';
import type { PolicySchemas } from '@studio/policy';
import { tracked } from '@trpc/server';
import { z } from 'zod';
import { auditOf, type Context } from '../core/context.ts';
import { toTRPCError } from '../core/errors.ts';
import { authedProcedure, principalOf, router, sessionMutationProcedure } from '../core/trpc.ts';
import { actorOf } from '../realtime/event-bus.ts';
import { ExecLog, StdinQueue } from './exec-registry.ts';
import { IdempotencyCache } from './idempotency.ts';

const text = new TextDecoder('utf-8');

/**
 * What `exec.stream` yields: first `started` (with the id for exec.write), then chunks, then `exit`. Each is sent
 * tracked (`{ id, data }`): `id` is what a reconnecting reader passes as `lastEventId` to resume after it.
 */
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
// tRPC's SSE link resends the last tracked id as `lastEventId` when it reconnects (also from the Last-Event-ID
// header the EventSource itself sends); a caller may pass it too.
const streamReadInput = z.object({
  execId: execIdSchema,
  token: z
    .string()
    .regex(/^[A-Za-z0-9_-]{43}$/)
    .describe('the stream token exec.start returned'),
  lastEventId: z
    .string()
    .regex(/^[0-9]{1,15}$/)
    .nullish()
    .describe('resume after this event of the exec (an id exec.stream sent)'),
});

// A stream event's weight in the replay buffer: its text, plus a little for the rest of the object.
const weightOf = (event: ExecStreamEvent): number =>
  64 + ('data' in event ? Buffer.byteLength(event.data, 'utf8') : 0);

type RunResult = {
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  durationMs: number;
  timedOut: boolean;
  truncated: boolean;
  oomKilled: boolean;
};

type StartInput = Omit<z.infer<PolicySchemas['execRunInput']>, 'idempotencyKey'> & {
  keepStdinOpen?: boolean;
};

/** exec.start's work: starts the command, logs its events for readers and returns how to read them. */
async function startExec(
  ctx: Context & { principal: NonNullable<Context['principal']> },
  input: StartInput,
  markStarted: () => void,
): Promise<{ execId: string; token: string; attachBy: string }> {
  const limits = ctx.deps.policy.exec;
  const userId = ctx.principal.userId;
  const sandbox = await ctx.deps.sessions.withSandbox(userId, input.sessionId, auditOf(ctx), (s) =>
    Promise.resolve(s),
  );
  const publish = publishExec(ctx, input.sessionId);
  const execId = ctx.deps.execs.newId();
  const stdin = new StdinQueue(limits.maxStdinBytes);
  if (input.stdin !== undefined && input.stdin.length > 0) stdin.push(new TextEncoder().encode(input.stdin));
  if (input.keepStdinOpen !== true) stdin.close();
  const abort = new AbortController();
  // The backend caps output at maxOutputBytes; the buffer holds that plus the events' own weight, so in
  // practice a reader can always resume, and the cap only bounds memory if something else grows.
  const log = new ExecLog<ExecStreamEvent>(limits.maxOutputBytes + 64 * 1024);
  const push = (event: ExecStreamEvent) => log.push(event, weightOf(event));
  const decode = utf8Streams();
  const { token, attachBy } = ctx.deps.execs.addStream(execId, {
    ownerId: userId,
    sessionId: input.sessionId,
    ...(input.keepStdinOpen === true ? { stdin } : {}),
    log: log as ExecLog<unknown>,
    cancel: () => abort.abort(),
  });
  push({ type: 'started', execId });
  publish({ type: 'exec.started', execId, command: [...input.command] });
  const onChunk = (stream: 'stdout' | 'stderr') => (c: Uint8Array) => {
    const data = decode[stream](c);
    if (data.length === 0) return;
    push({ type: stream, data });
    publish({ type: 'exec.output', execId, stream, data, truncated: false });
  };
  markStarted();
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
        push({
          type: 'exit',
          exitCode: r.exitCode,
          signal: r.signal,
          timedOut: r.timedOut,
          truncated: r.truncated,
          oomKilled: r.oomKilled,
          durationMs: r.durationMs,
        });
        log.end();
      },
      (error: unknown) => {
        const cancelled = isIsolationError(error, 'CANCELLED');
        void ctx.deps.sessions.noteSandboxFailure(input.sessionId, error).catch(() => undefined);
        publish({ type: 'exec.exited', execId, exitCode: null, signal: null, timedOut: false, cancelled });
        log.end(cancelled ? undefined : error);
      },
    )
    .finally(() => {
      // Its stdin closes with it; its events stay readable for the linger window.
      stdin.close();
      ctx.deps.execs.finished(execId);
    });
  return { execId, token, attachBy: attachBy.toISOString() };
}

/** Exec procedures; `schemas` are the policy's, bound to the running limits. */
export const execRouter = (schemas: PolicySchemas) => {
  // exec.start takes exec.run's input and may keep stdin open for exec.write / exec.closeStdin.
  const streamInput = schemas.execRunInput.extend({ keepStdinOpen: z.boolean().optional() });
  // One per router, so per app: keys are the caller's, for exec.run and exec.start separately.
  const idempotent = new IdempotencyCache();
  return router({
    /**
     * Runs argv (no shell) in the session and returns when it ends: exit code, output (UTF-8, lossy), duration,
     * and whether it timed out or its output was cut. Timeout and output cap come from the policy.
     *
     * With `idempotencyKey`, a retry by the same user with the same key and input within 10 minutes runs nothing:
     * it gets the first call's result (waiting for it while it runs). The same key with another input is
     * IDEMPOTENCY_KEY_REUSED. A first call refused before the command started is not remembered.
     */
    run: sessionMutationProcedure.input(schemas.execRunInput).mutation(({ ctx, input }) => {
      const limits = ctx.deps.policy.exec;
      const userId = ctx.principal.userId;
      const { idempotencyKey, ...call } = input;
      const execute = (markStarted: () => void): Promise<RunResult> =>
        ctx.deps.sessions.withSandbox(userId, input.sessionId, auditOf(ctx), async (sandbox) => {
          markStarted();
          const publish = publishExec(ctx, input.sessionId);
          const execId = ctx.deps.execs.newId();
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
        });
      if (idempotencyKey === undefined) return execute(() => undefined);
      return idempotent.run(
        userId,
        'exec.run',
        idempotencyKey,
        call,
        execute,
        (r) => 256 + Buffer.byteLength(r.stdout) + Buffer.byteLength(r.stderr),
      );
    }),

    /**
     * Starts argv in the session (a POST: GETs never start anything, SECURITY.md §4b) and returns its `execId`
     * and a stream `token` for exec.stream, which reads its output. The command runs at most once; if no reader
     * attaches within 30 s (or the last one leaves and none comes back within 30 s) it is killed. Its events are
     * kept for readers in a replay buffer bounded by the policy's `exec.maxOutputBytes`, and stay readable for 30 s
     * after it ends. With `keepStdinOpen`, stdin stays open for exec.write until exec.closeStdin. With
     * `idempotencyKey`, a retried start (same user, key and input, within 10 minutes) returns the first start's
     * `execId` and `token` and starts nothing.
     */
    start: sessionMutationProcedure
      .input(streamInput)
      .output(z.object({ execId: z.string(), token: z.string(), attachBy: z.string() }))
      .mutation(({ ctx, input }) => {
        const { idempotencyKey, ...call } = input;
        const begin = (markStarted: () => void) => startExec(ctx, call, markStarted);
        if (idempotencyKey === undefined) return begin(() => undefined);
        return idempotent.run(ctx.principal.userId, 'exec.start', idempotencyKey, call, begin);
      }),

    /**
     * Reads a started exec (exec.start's `execId` and `token`; yours only, another user's or a wrong token is
     * NOT_FOUND): `{ type: 'started', execId }`, then `{ type: 'stdout' | 'stderr', data }` chunks (UTF-8 text,
     * decoded across chunk boundaries; invalid bytes become U+FFFD), then one `exit` event, each tracked with an
     * id. Without `lastEventId` it reads from the first event; with it (which the SSE link sends by itself when
     * it reconnects) it resumes right after that event, so a reader that reconnects loses nothing and sees
     * nothing twice. An event no longer in the replay buffer is RESUME_EXPIRED. One reader at a time: a new one
     * takes over (the old one ends with INVALID_STATE). It starts and changes nothing.
     */
    stream: authedProcedure.input(streamReadInput).subscription(async function* ({ ctx, input, signal }) {
      const execs = ctx.deps.execs;
      // Errors inside a subscription skip the procedure middleware: map them here.
      const after = input.lastEventId == null ? 0 : Number(input.lastEventId);
      let lease: ReturnType<typeof execs.attach>;
      try {
        lease = execs.attach(ctx.principal.userId, input.execId, input.token, after);
      } catch (error) {
        throw toTRPCError(error);
      }
      const stop = signal ? AbortSignal.any([signal, lease.signal]) : lease.signal;
      try {
        for await (const { seq, item } of lease.log.read(after, stop)) {
          yield tracked(String(seq), item as ExecStreamEvent);
        }
        if (lease.signal.aborted) throw lease.signal.reason;
      } catch (error) {
        throw toTRPCError(error);
      } finally {
        lease.release();
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
