import { IsolationError, isIsolationError } from '@studio/isolation';
import { describe, expect, it } from 'vitest';
import { type BuildStep, buildFailureOf, RootfsBuilder, type RootfsBuildOptions } from './rootfs-builder.ts';

// What a build refuses before it makes anything (no runsc, no root needed): the live builds are in
// rootfs-builder.gvisor.test.ts.
const builder = new RootfsBuilder({
  dataDir: '/nonexistent/studio-unit',
  agentDir: '/nonexistent/agent',
  seccompProfile: '/nonexistent/studio.json',
});
const limits = { memoryBytes: 256 << 20, cpus: 1, pids: 64, diskBytes: 64 << 20, timeoutMs: 60_000 };
const run: BuildStep = { kind: 'run', command: ['true'], user: 'root', description: 'RUN true' };
const valid: RootfsBuildOptions = {
  base: '/nonexistent/base',
  output: '/nonexistent/out',
  steps: [run],
  limits,
};

async function refusal(options: RootfsBuildOptions): Promise<IsolationError> {
  try {
    await builder.build(options);
  } catch (error) {
    if (isIsolationError(error)) return error;
    throw error;
  }
  throw new Error('the build was not refused');
}

describe('RootfsBuilder.build refuses bad options before it makes anything', () => {
  it.each([
    ['a relative base', { base: 'rootfs' }, /base must be an absolute path/],
    ['an output with ..', { output: '/data/../etc/x' }, /output must be a normalised path/],
    ['an output of /', { output: '/' }, /output cannot be \//],
    ['too little memory', { limits: { ...limits, memoryBytes: 1 << 20 } }, /limits.memoryBytes/],
    ['a tiny disk', { limits: { ...limits, diskBytes: 1 << 20 } }, /limits.diskBytes/],
    ['no time', { limits: { ...limits, timeoutMs: 0 } }, /limits.timeoutMs/],
    ['a bad env name', { env: { 'A=B': 'x' } }, /is not a variable name/],
    ['an env value with NUL', { env: { A: 'x\0y' } }, /without NUL/],
  ] as const)('%s', async (_, change, message) => {
    const error = await refusal({ ...valid, ...change } as RootfsBuildOptions);
    expect(error.code).toBe('INVALID_INPUT');
    expect(error.message).toMatch(message);
    expect(buildFailureOf(error)).toBeUndefined();
  });

  it.each([
    ['no description', { ...run, description: ' ' }, /step 2 needs a description/],
    ['an empty command', { ...run, command: [] }, /command must be a non-empty array/],
    ['a command with NUL', { ...run, command: ['echo', 'a\0b'] }, /without NUL/],
    ['an unknown user', { ...run, user: 'admin' }, /user must be root or studio/],
    ['a relative cwd', { ...run, cwd: 'src' }, /cwd must be an absolute path/],
    [
      'a file path with ..',
      {
        kind: 'file',
        path: '/etc/../x',
        content: new Uint8Array(),
        mode: 0o644,
        owner: 'root',
        description: 'COPY',
      },
      /path must be a normalised path/,
    ],
    [
      'a mode out of range',
      {
        kind: 'file',
        path: '/x',
        content: new Uint8Array(),
        mode: 0o10000,
        owner: 'root',
        description: 'COPY',
      },
      /mode must be an integer/,
    ],
    [
      'content that is not bytes',
      { kind: 'file', path: '/x', content: 'text', mode: 0o644, owner: 'root', description: 'COPY' },
      /content must be bytes/,
    ],
    ['an unknown kind', { kind: 'copy', description: 'COPY' }, /kind must be run or file/],
  ] as const)('a step with %s', async (_, step, message) => {
    const error = await refusal({ ...valid, steps: [run, step as unknown as BuildStep] });
    expect(error.code).toBe('INVALID_INPUT');
    expect(error.message).toMatch(message);
    expect(error.message).toMatch(/^step 2/);
  });

  it('is cancelled at once when its signal is already aborted', async () => {
    const error = await refusal({ ...valid, signal: AbortSignal.abort() });
    expect(error.code).toBe('CANCELLED');
    expect(buildFailureOf(error)).toEqual({ reason: 'cancelled' });
  });
});

describe('buildFailureOf', () => {
  it('reads the reason of a build failure, and nothing from other errors', () => {
    expect(buildFailureOf(new IsolationError('TIMEOUT', 'x', { details: { reason: 'timeout' } }))).toEqual({
      reason: 'timeout',
    });
    expect(
      buildFailureOf(new IsolationError('INTERNAL', 'x', { details: { reason: 'other' } })),
    ).toBeUndefined();
    expect(buildFailureOf(new IsolationError('INTERNAL', 'x'))).toBeUndefined();
    expect(buildFailureOf(new Error('x'))).toBeUndefined();
  });
});
