import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The infra/ directory. */
export const INFRA = fileURLToPath(new URL('../', import.meta.url));

/** In CI a missing tool fails the test; elsewhere the test skips with a one-line reason. */
export const IN_CI = process.env.CI === 'true';

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(command: string, args: string[], env: Record<string, string> = {}): RunResult {
  const r = spawnSync(command, args, {
    encoding: 'utf8',
    env: { ...process.env, ...env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` },
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** The absolute path of a program on PATH (and /usr/sbin), or undefined. */
export function which(program: string): string | undefined {
  const r = run('bash', ['-c', `command -v ${program}`]);
  return r.status === 0 ? r.stdout.trim() : undefined;
}

export function tempDir(prefix = 'studio-infra-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
