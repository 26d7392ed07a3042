import { IsolationError, isIsolationError } from '@studio/isolation';

/** A runsc call that ran and failed: its stderr and exit code (what execa reports, for calls made without it). */
export class RunscFailure extends Error {
  override readonly name = 'RunscFailure';
  readonly stderr: string;
  readonly exitCode: number | null;

  constructor(stderr: string, exitCode: number | null) {
    super(stderr || `runsc exited with ${exitCode}`);
    this.stderr = stderr;
    this.exitCode = exitCode;
  }
}

interface ProcessError {
  code?: string;
  stderr?: unknown;
  shortMessage?: string;
  message?: string;
  timedOut?: boolean;
  exitCode?: number | null;
}

/** The apt command that installs gVisor on Debian. */
export const INSTALL_HINT = 'install runsc from bookworm-backports (bash infra/setup-runtimes.sh)';

/**
 * The one place where runsc's failures (execa errors, runsc's stderr, spawn errors) become
 * `IsolationError`s. `what` names the object for the message ("sandbox sbx-…"). runsc answers every
 * failure with exit status 128 and a line of text, so the text decides.
 */
export function mapRunscError(error: unknown, what: string): IsolationError {
  if (isIsolationError(error)) return error;
  const e = (error ?? {}) as ProcessError;
  if (e.code === 'ENOENT') {
    return new IsolationError('UNAVAILABLE', `runsc not found: ${INSTALL_HINT}`, { cause: error });
  }
  if (e.code === 'EACCES' || e.code === 'EPERM') {
    return new IsolationError('UNAVAILABLE', `runsc cannot be run (${e.code}): run Studio as root`, {
      cause: error,
    });
  }
  if (e.timedOut) {
    return new IsolationError('UNAVAILABLE', `${what}: runsc did not answer in time`, { cause: error });
  }
  const stderr = typeof e.stderr === 'string' ? e.stderr : '';
  const detail = lastLine(stderr || e.shortMessage || e.message || String(error));
  if (/file does not exist|no such container|container .* not found/i.test(detail)) {
    return new IsolationError('NOT_FOUND', `${what} not found`, { cause: error });
  }
  if (/already exists/i.test(detail)) {
    return new IsolationError('ALREADY_EXISTS', `${what} already exists`, { cause: error });
  }
  if (
    /in state (created|running|paused|stopped)|is not running|not paused|cannot .* in state/i.test(detail)
  ) {
    return new IsolationError('INVALID_STATE', `${what}: ${detail}`, { cause: error });
  }
  if (
    /must be run as root|operation not permitted|permission denied/i.test(detail) &&
    process.getuid?.() !== 0
  ) {
    return new IsolationError('UNAVAILABLE', `${what}: gVisor needs root: run Studio as root (${detail})`, {
      cause: error,
    });
  }
  return new IsolationError('INTERNAL', `${what}: runsc failed: ${detail}`, { cause: error });
}

function lastLine(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return (lines[lines.length - 1] ?? text).slice(0, 500);
}
