import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerBackend, type DockerSandbox } from '../index.ts';

// Issue 16: a memory bomb run through `sh -c` was OOM-killed but reported `oomKilled: false`. The shell is the
// exec's process: its child dies of SIGKILL and the shell exits 137 (128 + 9) instead of dying of the signal, so
// a check for "died of SIGKILL" alone missed it.
const dataDir = fileURLToPath(new URL('../../../../.cache/test-data/docker-regression', import.meta.url));
const image = process.env.STUDIO_SANDBOX_IMAGE ?? 'studio-sandbox:latest';
const backend = new DockerBackend({ dataDir, instanceId: 'regression' });
const MiB = 1024 * 1024;
const BOMB = 'l = []\nwhile True:\n    l.append(b"x" * (16 << 20))';
let sandbox: DockerSandbox | undefined;
let skipReason: string | undefined;

beforeAll(async () => {
  mkdirSync(dataDir, { recursive: true });
  const available = await backend.available();
  if (!available.ok) {
    if (process.env.CI === 'true') throw new Error(`Docker is required in CI: ${available.reason}`);
    skipReason = available.reason;
    return;
  }
  sandbox = await backend.create({
    image,
    resources: {
      memoryBytes: 128 * MiB,
      cpus: 1,
      pids: 128,
      diskBytes: 64 * MiB,
      inodes: 4096,
      tmpBytes: 16 * MiB,
    },
    labels: { 'studio.test': 'oom-under-shell' },
  });
}, 120_000);
afterAll(async () => {
  await sandbox?.destroy();
  await backend.close();
});

describe('regression: an OOM kill under sh -c is reported', () => {
  it('sh -c around a memory bomb: oomKilled, exit 137; a plain exit 137 is not an OOM', async (ctx) => {
    if (skipReason || !sandbox) return ctx.skip(skipReason ?? 'no sandbox');
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
