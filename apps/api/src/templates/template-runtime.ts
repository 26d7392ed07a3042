import type { ExecOptions, Sandbox, TerminalOptions } from '@studio/isolation';
import { AppError } from '../core/errors.ts';
import type { TemplateRuntime } from './recipe.ts';

/** Where a template's start command writes its output inside the sandbox (a person can `cat` it). */
export const START_LOG = '/tmp/studio-start.log';

/**
 * The sandbox with the template's settings applied to every exec and terminal: its environment under the call's
 * own (the call wins), and its working directory when the call names none.
 */
export function withTemplateRuntime(sandbox: Sandbox, runtime: TemplateRuntime | undefined): Sandbox {
  if (runtime === undefined || (Object.keys(runtime.env).length === 0 && runtime.workdir === ''))
    return sandbox;
  const env = (own: Record<string, string> | undefined) => ({ ...runtime.env, ...own });
  const cwd = (own: string | undefined) => own ?? (runtime.workdir === '' ? undefined : runtime.workdir);
  const exec = (command: readonly string[], options: ExecOptions) => {
    const dir = cwd(options.cwd);
    return sandbox.exec(command, {
      ...options,
      env: env(options.env),
      ...(dir === undefined ? {} : { cwd: dir }),
    });
  };
  const openTerminal = (options: TerminalOptions) => {
    const dir = cwd(options.cwd);
    return sandbox.openTerminal({
      ...options,
      env: env(options.env),
      ...(dir === undefined ? {} : { cwd: dir }),
    });
  };
  return new Proxy(sandbox, {
    get(target, property) {
      if (property === 'exec') return exec;
      if (property === 'openTerminal') return openTerminal;
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8').trim();

/**
 * Makes the template's working directory, then runs its start command, left running in its own process session (so that it outlives the exec that
 * started it, output to {@link START_LOG}), then its ready check until it exits 0. TEMPLATE_START_FAILED when the
 * command cannot start, exits before the check passes, or the check does not pass in time; the message carries
 * the last lines of both outputs. `sandbox` is the session's handle (template env, working directory, proxy).
 */
export async function startTemplate(sandbox: Sandbox, runtime: TemplateRuntime | undefined): Promise<void> {
  // The working directory lives in the session's workspace, which starts empty: it is made first.
  if (runtime?.workdir) await sandbox.mkdir(runtime.workdir, { recursive: true });
  const start = runtime?.start;
  if (!start) return;
  // `$0` is the command, never spliced into this script; setsid: the agent ends an exec's process group when it exits.
  const launch = `mkdir -p "$(dirname ${START_LOG})"; setsid /bin/sh -c "$0" > ${START_LOG} 2>&1 < /dev/null & echo $!`;
  const launched = await sandbox.exec(['/bin/sh', '-c', launch, start.command], {
    timeoutMs: 15_000,
    maxOutputBytes: 4096,
  });
  const pid = Number.parseInt(text(launched.stdout), 10);
  if (launched.exitCode !== 0 || !Number.isInteger(pid)) {
    throw new AppError(
      'TEMPLATE_START_FAILED',
      `the template's start command could not be started: ${text(launched.stderr).slice(-500)}`,
    );
  }
  const ready = start.ready;
  if (!ready) return;
  const deadline = Date.now() + ready.timeoutMs;
  let last = '';
  for (let attempt = 0; ; attempt++) {
    const check = await sandbox.exec(['/bin/sh', '-c', ready.command], {
      timeoutMs: Math.max(1000, Math.min(10_000, deadline - Date.now())),
      maxOutputBytes: 8192,
    });
    if (check.exitCode === 0) return;
    last = `${text(check.stdout)}\n${text(check.stderr)}`.trim().slice(-300);
    const alive = await sandbox.exec(['/bin/sh', '-c', `kill -0 ${pid} 2>/dev/null`], {
      timeoutMs: 5000,
      maxOutputBytes: 0,
    });
    if (alive.exitCode !== 0 || Date.now() >= deadline) {
      const log = await sandbox
        .exec(['tail', '-c', '600', START_LOG], { timeoutMs: 5000, maxOutputBytes: 1024 })
        .then((r) => text(r.stdout))
        .catch(() => '');
      throw new AppError(
        'TEMPLATE_START_FAILED',
        `${alive.exitCode !== 0 ? "the template's start command exited before its ready check passed" : `the template's ready check did not pass within ${Math.round(ready.timeoutMs / 1000)} s`}; fix the template's start settings. Ready check said: ${last || '(nothing)'}; start command output: ${log || '(nothing)'}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 100 * 2 ** Math.min(attempt, 3))));
  }
}
