import type { ChildProcess } from 'node:child_process';

/** A spawned API process that has said it listens. */
export interface ApiProcess {
  child: ChildProcess;
  /** `http://127.0.0.1:<port>`, from its "listening on" line. */
  url: string;
  /** Its stdout and stderr so far (stdout is empty unless it was piped). */
  stdout(): string;
  stderr(): string;
  /** Resolves with its exit code (null after a signal) once it has exited, for whatever reason. */
  exited: Promise<number | null>;
}

/**
 * Resolves once an API started with piped stderr says "listening on http://127.0.0.1:<port>" (and, with `ready`,
 * once its stderr also matches that). Rejects, with what it printed, when it exits first or takes longer than
 * `timeoutMs` (then it is killed: a test never leaves a half-started API behind).
 */
export function whenListening(
  child: ChildProcess,
  options: { timeoutMs: number; ready?: RegExp },
): Promise<ApiProcess> {
  let err = '';
  let out = '';
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the API did not start within ${options.timeoutMs / 1000} s:\n${err}`));
    }, options.timeoutMs);
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(err);
      if (m && (options.ready === undefined || options.ready.test(err))) {
        clearTimeout(timer);
        resolve({ child, url: m[1] as string, stdout: () => out, stderr: () => err, exited });
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the API exited (${code ?? signal}) during start-up:\n${err}`));
    });
  });
}
