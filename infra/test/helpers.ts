import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
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

/** Where `infra/swarm/netns-swarm.sh` keeps the test Swarm's state (its `STUDIO_SWARM_DIR`). */
export const SWARM_DIR = process.env.STUDIO_SWARM_DIR || '/run/studio-swarm';

/** The `export K=V` lines `netns-swarm.sh up` writes to $STUDIO_SWARM_DIR/env. */
export function readSwarmEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of readFileSync(join(SWARM_DIR, 'env'), 'utf8').split('\n')) {
    const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m?.[1] && m[2] !== undefined) env[m[1]] = m[2];
  }
  return env;
}
