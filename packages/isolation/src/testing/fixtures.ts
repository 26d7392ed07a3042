import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { expect } from 'vitest';
import { type IsolationError, type IsolationErrorCode, isIsolationError } from '../errors.ts';
import type { ExecOptions, ExecResult, Sandbox } from '../types.ts';

/** An exec result with its output decoded as UTF-8. */
export interface RunOutput extends ExecResult {
  out: string;
  err: string;
}

const decoder = new TextDecoder();
/** Decodes UTF-8 (lossy). */
export const text = (bytes: Uint8Array): string => decoder.decode(bytes);

/** Default exec limits of the cases: generous, so that only the behaviour under test ends an exec. */
export const EXEC_DEFAULTS = { timeoutMs: 60_000, maxOutputBytes: 4 * 2 ** 20 } as const;

/** Runs argv exactly (no shell) and decodes the output. */
export async function run(
  sandbox: Sandbox,
  command: readonly string[],
  options: Partial<ExecOptions> = {},
): Promise<RunOutput> {
  const result = await sandbox.exec(command, { ...EXEC_DEFAULTS, ...options });
  return { ...result, out: text(result.stdout), err: text(result.stderr) };
}

/** Runs a POSIX shell script: `sh -c script`. */
export function sh(sandbox: Sandbox, script: string, options: Partial<ExecOptions> = {}): Promise<RunOutput> {
  return run(sandbox, ['sh', '-c', script], options);
}

/** Runs a python3 program given as `-c` text, with extra argv. */
export function py(
  sandbox: Sandbox,
  code: string,
  args: readonly string[] = [],
  options: Partial<ExecOptions> = {},
): Promise<RunOutput> {
  return run(sandbox, ['python3', '-c', code, ...args], options);
}

/** Runs a python3 program whose last stdout line is JSON, and parses it. */
export async function pyJson<T>(
  sandbox: Sandbox,
  code: string,
  args: readonly string[] = [],
  options: Partial<ExecOptions> = {},
): Promise<T> {
  const r = await py(sandbox, code, args, options);
  const last = r.out.trimEnd().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(last) as T;
  } catch {
    throw new Error(`probe printed no JSON (${describeRun(r)})`);
  }
}

/** Common python prelude for probes: JSON output and errno names. */
export const PY_PRELUDE = `
import ctypes, errno, json, os, platform, socket, sys
def ename(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) and e.errno else type(e).__name__
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sys_call(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *args)
    return r, errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno())) if r == -1 else None
ARCH = platform.machine()
NR = {
    'x86_64': {'getpid': 39, 'ptrace': 101, 'add_key': 248, 'request_key': 249, 'keyctl': 250, 'unshare': 272, 'setns': 308, 'mount': 165},
    'aarch64': {'getpid': 172, 'ptrace': 117, 'add_key': 217, 'request_key': 218, 'keyctl': 219, 'unshare': 97, 'setns': 268, 'mount': 40},
}[ARCH]
`;

/** A short description of an exec result for assertion messages. */
export function describeRun(r: RunOutput): string {
  const clip = (s: string) => (s.length > 800 ? `${s.slice(0, 800)}…` : s);
  return `exit=${r.exitCode} signal=${r.signal} timedOut=${r.timedOut} oom=${r.oomKilled} stdout=${JSON.stringify(clip(r.out))} stderr=${JSON.stringify(clip(r.err))}`;
}

/** Expects an exec to have run and exited 0. */
export function expectOk(r: RunOutput, what: string): void {
  expect(r.exitCode, `${what}: ${describeRun(r)}`).toBe(0);
}

/** Expects an exec to have failed: exit not 0, or killed. */
export function expectFailed(r: RunOutput, what: string): void {
  expect(r.exitCode !== 0, `${what} should fail: ${describeRun(r)}`).toBe(true);
}

/**
 * Awaits `promise` and expects an {@link IsolationError} whose code is one of `codes` (checked by code, not
 * class). Returns the error; fails the case with what the promise gave instead.
 */
export async function expectIsolationError(
  promise: Promise<unknown>,
  codes: readonly IsolationErrorCode[],
  what: string,
): Promise<IsolationError> {
  let outcome: unknown;
  try {
    outcome = await promise;
  } catch (error) {
    if (isIsolationError(error) && codes.includes(error.code)) return error;
    const got = describeError(error);
    throw new Error(`${what}: expected IsolationError ${codes.join('|')}, got ${got}`, { cause: error });
  }
  throw new Error(
    `${what}: expected IsolationError ${codes.join('|')}, but it resolved: ${preview(outcome)}`,
  );
}

/** `CODE: message` for an isolation error, the plain text of anything else. */
export function describeError(error: unknown): string {
  return isIsolationError(error)
    ? `IsolationError ${error.code}: ${error.message}`
    : `not an IsolationError: ${String(error)}`;
}

/** Settles a promise into a value or an error, for attacks where either outcome is then inspected. */
export async function settle<T>(
  promise: Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, error };
  }
}

function preview(value: unknown): string {
  if (value instanceof Uint8Array)
    return `${value.byteLength} bytes: ${JSON.stringify(text(value).slice(0, 200))}`;
  try {
    return JSON.stringify(value)?.slice(0, 400) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Polls `probe` until it returns something other than `undefined`; throws with `what` when time runs out. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  { timeoutMs = 30_000, intervalMs = 250 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`, {
        cause: last,
      });
    }
    await sleep(intervalMs);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A random token that cannot appear by chance. */
export const nonce = (prefix: string): string => `${prefix}-${randomBytes(12).toString('hex')}`;

/**
 * Command lines of processes matching `pattern` (`pgrep -af`), leaving out pgrep itself and any wrapper
 * that carries the pattern in its own argv.
 */
export async function processesMatching(sandbox: Sandbox, pattern: string): Promise<string[]> {
  const r = await run(sandbox, ['pgrep', '-af', pattern], { timeoutMs: 30_000 });
  if (r.exitCode === 1) return [];
  expectOk(r, `pgrep -af ${pattern}`);
  return r.out.split('\n').filter((line) => line.trim() !== '' && !line.includes('pgrep'));
}

/** Waits until no process matches `pattern`; fails with the survivors' command lines. */
export async function expectNoProcesses(sandbox: Sandbox, pattern: string, what: string): Promise<void> {
  let survivors: string[] = [];
  const deadline = Date.now() + 20_000;
  for (;;) {
    survivors = await processesMatching(sandbox, pattern);
    if (survivors.length === 0 || Date.now() > deadline) break;
    await sleep(500);
  }
  expect(survivors, `${what}: processes still running`).toEqual([]);
}

/** Reads a duplex until it ends, errors or `timeoutMs` passes. */
export function readStream(
  stream: Duplex,
  timeoutMs: number,
): Promise<{ data: Buffer; ended: 'end' | 'error' | 'timeout'; error?: unknown }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (ended: 'end' | 'error' | 'timeout', error?: unknown) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stream.destroy();
      resolve({ data: Buffer.concat(chunks), ended, ...(error === undefined ? {} : { error }) });
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    stream.on('data', (chunk: Buffer | string) => chunks.push(Buffer.from(chunk)));
    stream.on('end', () => finish('end'));
    stream.on('close', () => finish('end'));
    stream.on('error', (error) => finish('error', error));
  });
}

/** True when `haystack` contains the UTF-8 bytes of `needle`. */
export function containsText(haystack: Uint8Array, needle: string): boolean {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.byteLength).includes(needle);
}
