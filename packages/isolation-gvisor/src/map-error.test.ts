import { IsolationError } from '@studio/isolation';
import { describe, expect, it } from 'vitest';
import { mapRunscError, RunscFailure } from './map-error.ts';

describe('mapRunscError', () => {
  it('names the install command when runsc is missing', () => {
    const e = mapRunscError(Object.assign(new Error('spawn runsc ENOENT'), { code: 'ENOENT' }), 'runsc');
    expect(e.code).toBe('UNAVAILABLE');
    expect(e.message).toBe(
      'runsc not found: install runsc from bookworm-backports (bash infra/setup-runtimes.sh)',
    );
  });

  it.each([
    ['loading container: file does not exist', 'NOT_FOUND'],
    ['loading container "sbx-0": file does not exist', 'NOT_FOUND'],
    ['loading sandbox: file does not exist', 'NOT_FOUND'],
    ['creating container: cannot lock container metadata file: container already exists', 'ALREADY_EXISTS'],
    ['resume failed: cannot resume container "sbx-0" in state running', 'INVALID_STATE'],
    [
      'executing processes for container: cannot execute in container "sbx-0" in state paused',
      'INVALID_STATE',
    ],
    ['starting container: cannot start container "sbx-0" in state running', 'INVALID_STATE'],
    ['something else entirely', 'INTERNAL'],
  ] as const)('maps runsc saying %j to %s', (stderr, code) => {
    const e = mapRunscError(new RunscFailure(`W1123 noise\n${stderr}\n`, 128), 'sandbox sbx-0');
    expect(e.code).toBe(code);
    expect(e.cause).toBeInstanceOf(RunscFailure);
  });

  it('reads execa errors by their stderr and keeps the original as cause', () => {
    const execaLike = Object.assign(new Error('Command failed with exit code 128'), {
      stderr: 'loading container: file does not exist',
      exitCode: 128,
    });
    const e = mapRunscError(execaLike, 'sandbox sbx-0');
    expect(e.code).toBe('NOT_FOUND');
    expect(e.message).toBe('sandbox sbx-0 not found');
    expect(e.cause).toBe(execaLike);
  });

  it('reports a hung runsc as unavailable and passes IsolationErrors through', () => {
    expect(mapRunscError({ timedOut: true }, 'sandbox sbx-0').code).toBe('UNAVAILABLE');
    const own = new IsolationError('TIMEOUT', 'x');
    expect(mapRunscError(own, 'y')).toBe(own);
  });
});
