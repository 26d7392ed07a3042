import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runtimePaths, sandboxTest } from '@studio/isolation/testing';
import { describe, expect } from 'vitest';
import { DockerBackend } from '../index.ts';

// Issue 16: a memory bomb run through `sh -c` was OOM-killed but reported `oomKilled: false`. The shell is the
// exec's process: its child dies of SIGKILL and the shell exits 137 (128 + 9) instead of dying of the signal, so
// a check for "died of SIGKILL" alone missed it.
const dataDir = fileURLToPath(new URL('../../../../.cache/test-data/docker-regression', import.meta.url));
mkdirSync(dataDir, { recursive: true });
const BOMB = 'l = []\nwhile True:\n    l.append(b"x" * (16 << 20))';

const test = sandboxTest({
  createBackend: () =>
    new DockerBackend({ dataDir, instanceId: 'regression', seccompProfile: runtimePaths().seccompProfile }),
  image: process.env.STUDIO_SANDBOX_IMAGE ?? 'studio-sandbox:latest',
  labels: { 'studio.test': 'oom-under-shell' },
  requireRuntime: process.env.CI === 'true',
});

describe('regression: an OOM kill under sh -c is reported', () => {
  test('sh -c around a memory bomb: oomKilled, exit 137; a plain exit 137 is not an OOM', async ({
    sandbox,
  }) => {
    const opts = { timeoutMs: 90_000, maxOutputBytes: 1 << 20 };
    const bomb = await sandbox.exec(['sh', '-c', `python3 -c '${BOMB}'; exit $?`], opts);
    expect(bomb.exitCode).toBe(137);
    expect(bomb.oomKilled).toBe(true);
    expect(bomb.timedOut).toBe(false);
    // The same status without an OOM kill is not reported as one.
    const plain = await sandbox.exec(['sh', '-c', 'exit 137'], opts);
    expect(plain.exitCode).toBe(137);
    expect(plain.oomKilled).toBe(false);
  });
});
