import type { MessageInitShape } from '@bufbuild/protobuf';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { type ExecResult, isIsolationError, type Sandbox } from '@studio/isolation';
import { newId } from '../../core/ids.ts';
import { actorOf } from '../../realtime/event-bus.ts';
import { assertMayMutate } from '../../sessions/control.ts';
import { callOf, type EnvdCall, type EnvdDeps } from './envd-context.ts';
import { EnvdError, toEnvdFailure } from './envd-errors.ts';
import { checkUser, policyInput, toWorkspacePath, userFromAuthorization } from './envd-paths.ts';
import type { EventQueue } from './event-queue.ts';
import {
  type Process,
  type ProcessEventSchema,
  type ProcessSelector,
  Signal,
  type StartRequest,
} from './gen/process/process_pb.ts';
import {
  type EnvdProcess,
  type ProcessEnd,
  type ProcessOutput,
  type ProcessTable,
  StdinQueue,
} from './process-table.ts';

/** What the process service needs from the handler: the session's table and how often to send keep-alives. */
export interface ProcessServiceOptions {
  deps: EnvdDeps;
  table(sessionId: string): ProcessTable;
  /** Keep-alive interval of a stream whose client asked for none (ms). */
  keepAliveMs: number;
}

type ProcessEventMessage = MessageInitShape<typeof ProcessEventSchema>;

/** The client's `Keepalive-Ping-Interval` (seconds, as the SDK sends it) in ms, within 1 s..60 s. */
export function keepAliveOf(context: HandlerContext, fallbackMs: number): number {
  const raw = Number(context.requestHeader.get('keepalive-ping-interval'));
  if (!Number.isFinite(raw) || raw <= 0) return fallbackMs;
  return Math.min(60, Math.max(1, raw)) * 1000;
}

/** Checks the user the call names in its Authorization header (absent: the default user). */
export function checkCallUser(context: HandlerContext): void {
  checkUser(userFromAuthorization(context.requestHeader.get('authorization')));
}

function selectorOf(selector: ProcessSelector | undefined) {
  const s = selector?.selector;
  if (!s || s.case === undefined) return { case: undefined } as const;
  return s;
}

function endOfResult(r: ExecResult, timeoutMs: number): ProcessEnd {
  if (r.timedOut) {
    return {
      exitCode: -1,
      exited: false,
      status: 'signal: killed',
      error: `the process ran past its time limit (${timeoutMs} ms) and was killed; pass a longer timeoutMs (0: the server's maximum)`,
    };
  }
  if (r.oomKilled) {
    return { exitCode: -1, exited: false, status: 'signal: killed', error: 'killed: out of memory' };
  }
  if (r.exitCode === null) {
    const status = `signal: ${(r.signal ?? 'killed').replace(/^SIG/, '').toLowerCase()}`;
    return { exitCode: -1, exited: false, status, error: status };
  }
  const status = `exit status ${r.exitCode}`;
  return r.exitCode === 0
    ? { exitCode: 0, exited: true, status }
    : { exitCode: r.exitCode, exited: true, status, error: status };
}

const KILLED: ProcessEnd = { exitCode: -1, exited: false, status: 'signal: killed', error: 'signal: killed' };

/** The `process.Process` service, on Studio's sandboxes. */
export function processService(options: ProcessServiceOptions): ServiceImpl<typeof Process> {
  const { deps } = options;
  const withSandbox = <T>(call: EnvdCall, fn: (s: Sandbox) => Promise<T>) =>
    deps.sessions.withSandbox(call.target.principal.userId, call.target.sessionId, call.audit, fn);

  async function* stream(
    process: EnvdProcess,
    queue: EventQueue<ProcessOutput>,
    context: HandlerContext,
  ): AsyncGenerator<ProcessEventMessage> {
    const keepAliveMs = keepAliveOf(context, options.keepAliveMs);
    try {
      yield { event: { case: 'start', value: { pid: process.pid } } };
      for (;;) {
        const next = await queue.next(keepAliveMs, context.signal);
        if (next === 'end') return;
        if (next === 'idle') {
          yield { event: { case: 'keepalive', value: {} } };
          continue;
        }
        const out = next.item;
        if (out.type === 'data') {
          yield { event: { case: 'data', value: { output: { case: out.stream, value: out.data } } } };
        } else {
          const end = out.end;
          yield {
            event: {
              case: 'end',
              value: {
                exitCode: end.exitCode,
                exited: end.exited,
                status: end.status,
                ...(end.error === undefined ? {} : { error: end.error }),
              },
            },
          };
          return;
        }
      }
    } finally {
      // The reader left (or the process ended): the process itself runs on.
      queue.close();
    }
  }

  /** Validates argv, env and cwd with the policy's exec rules (the same as exec.run), in workspace terms. */
  function commandOf(call: EnvdCall, request: StartRequest) {
    const config = request.process;
    if (!config || config.cmd === '') throw new EnvdError('INVALID_ARGUMENT', 'process.cmd is required');
    const cwd = config.cwd === undefined || config.cwd === '' ? '' : toWorkspacePath(config.cwd);
    // The sandbox's envs (given at create) first, the call's over them.
    const env = { ...call.target.envs, ...config.envs };
    const parsed = deps.schemas.execRunInput.safeParse({
      sessionId: call.target.sessionId,
      command: [config.cmd, ...config.args],
      ...(cwd === '' ? {} : { cwd: policyInput(cwd) }),
      ...(Object.keys(env).length === 0 ? {} : { env }),
    });
    if (!parsed.success) throw parsed.error;
    return { argv: parsed.data.command, cwd: parsed.data.cwd ?? '', env: parsed.data.env };
  }

  function publisher(call: EnvdCall) {
    const actor = actorOf(call.target.principal);
    return (body: Parameters<EnvdDeps['events']['publish']>[2]) =>
      deps.events.publish(call.target.sessionId, actor, body);
  }

  async function launch(
    call: EnvdCall,
    request: StartRequest,
    context: HandlerContext,
  ): Promise<EnvdProcess> {
    const { argv, cwd, env } = commandOf(call, request);
    const limits = deps.policy.exec;
    // envd kills a process when the Start call's own timeout (the SDK's timeoutMs, default 60 s) passes, even
    // after the client went away; 0 means none, which here is the policy's maximum.
    const asked = context.timeoutMs();
    const timeoutMs =
      asked === undefined || asked <= 0 ? limits.maxTimeoutMs : Math.min(asked, limits.maxTimeoutMs);
    const table = options.table(call.target.sessionId);
    const sandbox = await withSandbox(call, (s) => Promise.resolve(s));
    const config = request.process!;
    const ptySize = request.pty?.size;
    const isPty = request.pty !== undefined;
    // Without `stdin: true` stdin is closed at once; an older client that never sends the field gets it open.
    const keepStdin = !isPty && request.stdin !== false;
    const process = table.add({
      tag: request.tag,
      config: {
        cmd: config.cmd,
        args: [...config.args],
        envs: { ...config.envs },
        ...(config.cwd === undefined ? {} : { cwd: config.cwd }),
      },
      isPty,
      stdin: keepStdin ? new StdinQueue(limits.maxStdinBytes) : undefined,
    });
    const queue = process.attach();
    const publish = publisher(call);
    const execId = newId('exe_');
    const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
    const onOutput = (stream: 'stdout' | 'stderr' | 'pty') => (chunk: Uint8Array) => {
      process.output(stream, chunk);
      const kind = stream === 'pty' ? 'stdout' : stream;
      const data = decoders[kind].decode(chunk, { stream: true });
      if (data.length > 0) publish({ type: 'exec.output', execId, stream: kind, data, truncated: false });
    };
    const finish = (end: ProcessEnd, cancelled: boolean) => {
      publish({
        type: 'exec.exited',
        execId,
        exitCode: end.exited ? end.exitCode : null,
        signal: end.exited ? null : end.status.replace(/^signal: /, ''),
        timedOut: false,
        cancelled,
      });
      process.finish(end);
    };
    try {
      if (isPty) {
        const cols = ptySize?.cols || 80;
        const rows = ptySize?.rows || 24;
        checkSize(deps, cols, rows);
        const terminal = await sandbox.openTerminal({
          cols,
          rows,
          command: argv,
          ...(cwd === '' ? {} : { cwd }),
          ...(env ? { env } : {}),
        });
        process.terminal = terminal;
        let killedByUs = false;
        const timer =
          asked !== undefined && asked > 0
            ? setTimeout(() => {
                killedByUs = true;
                void terminal.close().catch(() => undefined);
              }, timeoutMs)
            : undefined;
        process.setKill(() => {
          killedByUs = true;
          void terminal.close().catch(() => undefined);
        });
        terminal.onData(onOutput('pty'));
        void terminal.exited.then(
          (exit) => {
            clearTimeout(timer);
            if (killedByUs || exit.exitCode === null) return finish(KILLED, killedByUs);
            const status = `exit status ${exit.exitCode}`;
            finish(
              exit.exitCode === 0
                ? { exitCode: 0, exited: true, status }
                : { exitCode: exit.exitCode, exited: true, status, error: status },
              false,
            );
          },
          () => finish(KILLED, killedByUs),
        );
      } else {
        const abort = new AbortController();
        process.setKill(() => abort.abort());
        void sandbox
          .exec(argv, {
            ...(cwd === '' ? {} : { cwd }),
            ...(env ? { env } : {}),
            ...(process.stdin ? { stdin: process.stdin } : {}),
            timeoutMs,
            maxOutputBytes: limits.maxOutputBytes,
            onStdout: onOutput('stdout'),
            onStderr: onOutput('stderr'),
            signal: abort.signal,
          })
          .then(
            (r) => finish(endOfResult(r, timeoutMs), false),
            (error: unknown) => {
              if (isIsolationError(error, 'CANCELLED')) return finish(KILLED, true);
              void deps.sessions.noteSandboxFailure(call.target.sessionId, error).catch(() => undefined);
              const failure = toEnvdFailure(error);
              if (failure.hidden)
                deps.logger.warn('envd process failed', { sessionId: call.target.sessionId, error });
              finish({ exitCode: -1, exited: false, status: 'error', error: failure.message }, false);
            },
          );
      }
    } catch (error) {
      queue.close();
      process.finish(KILLED);
      throw error;
    }
    publish({ type: 'exec.started', execId, command: [...argv] });
    startedQueues.set(process, queue);
    return process;
  }

  // The reader Start attached before the process began, so it misses no output.
  const startedQueues = new WeakMap<EnvdProcess, EventQueue<ProcessOutput>>();

  const mutation = async (context: HandlerContext) => {
    const call = callOf(context);
    checkCallUser(context);
    await assertMayMutate(deps.store, call.target.principal, call.target.sessionId);
    return call;
  };

  const input = (process: EnvdProcess, data: { case: 'stdin' | 'pty' | undefined; value?: Uint8Array }) => {
    if (data.case === undefined || data.value === undefined) return;
    if (process.terminal) {
      // A PTY takes both: envd writes stdin of a PTY process to the terminal too.
      process.terminal.write(data.value);
      return;
    }
    if (data.case === 'pty') {
      throw new EnvdError('INVALID_ARGUMENT', `process ${process.pid} has no PTY; send its input as stdin`);
    }
    if (!process.stdin || process.stdin.closed) {
      throw new EnvdError(
        'FAILED_PRECONDITION',
        `stdin of process ${process.pid} is closed; start it with stdin: true to send input`,
      );
    }
    process.stdin.push(data.value);
  };

  return {
    async list(_request, context) {
      const call = callOf(context);
      return {
        processes: options
          .table(call.target.sessionId)
          .list()
          .map((p) => ({
            pid: p.pid,
            ...(p.tag === undefined ? {} : { tag: p.tag }),
            config: {
              cmd: p.config.cmd,
              args: p.config.args,
              envs: p.config.envs,
              ...(p.config.cwd === undefined ? {} : { cwd: p.config.cwd }),
            },
          })),
      };
    },

    async *start(request, context) {
      const call = await mutation(context);
      const process = await launch(call, request, context);
      const queue = startedQueues.get(process) ?? process.attach();
      startedQueues.delete(process);
      for await (const event of stream(process, queue, context)) yield { event };
    },

    async *connect(request, context) {
      const call = callOf(context);
      const process = options.table(call.target.sessionId).find(selectorOf(request.process));
      // Records activity and resumes a paused session, as any use does.
      await withSandbox(call, async () => undefined);
      for await (const event of stream(process, process.attach(), context)) yield { event };
    },

    async update(request, context) {
      const call = await mutation(context);
      const process = options.table(call.target.sessionId).find(selectorOf(request.process));
      const size = request.pty?.size;
      if (!size) return {};
      if (!process.terminal)
        throw new EnvdError('INVALID_ARGUMENT', `process ${process.pid} has no PTY to resize`);
      checkSize(deps, size.cols, size.rows);
      process.terminal.resize(size.cols, size.rows);
      return {};
    },

    async sendInput(request, context) {
      const call = await mutation(context);
      const process = options.table(call.target.sessionId).find(selectorOf(request.process));
      input(process, request.input?.input ?? { case: undefined });
      deps.sessions.noteActivity(call.target.sessionId);
      return {};
    },

    async streamInput(requests, context) {
      const call = await mutation(context);
      let process: EnvdProcess | undefined;
      for await (const request of requests) {
        const event = request.event;
        if (event.case === 'start') {
          process = options.table(call.target.sessionId).find(selectorOf(event.value.process));
        } else if (event.case === 'data') {
          if (!process)
            throw new EnvdError('INVALID_ARGUMENT', 'StreamInput must start with the process to write to');
          input(process, event.value.input?.input ?? { case: undefined });
          deps.sessions.noteActivity(call.target.sessionId);
        }
      }
      return {};
    },

    async sendSignal(request, context) {
      const call = await mutation(context);
      const process = options.table(call.target.sessionId).find(selectorOf(request.process));
      if (request.signal !== Signal.SIGKILL && request.signal !== Signal.SIGTERM) {
        throw new EnvdError('INVALID_ARGUMENT', 'signal must be SIGKILL or SIGTERM');
      }
      // Studio ends the whole process group for either signal: it cannot deliver SIGTERM alone.
      process.kill();
      return {};
    },

    async closeStdin(request, context) {
      const call = await mutation(context);
      const process = options.table(call.target.sessionId).find(selectorOf(request.process));
      if (process.terminal) {
        throw new EnvdError(
          'INVALID_ARGUMENT',
          `process ${process.pid} is a PTY; send Ctrl-D (0x04) instead`,
        );
      }
      process.stdin?.close();
      return {};
    },
  };
}

function checkSize(deps: EnvdDeps, cols: number, rows: number): void {
  const { maxCols, maxRows } = deps.policy.terminal;
  if (cols < 1 || rows < 1 || cols > maxCols || rows > maxRows) {
    throw new EnvdError('INVALID_ARGUMENT', `a PTY is 1..${maxCols} columns by 1..${maxRows} rows`);
  }
}
