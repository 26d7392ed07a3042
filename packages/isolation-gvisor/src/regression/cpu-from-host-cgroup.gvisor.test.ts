import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runtimePaths, sandboxTest } from '@studio/isolation/testing';
import { describe, expect } from 'vitest';
import { GVisorBackend } from '../gvisor-backend.ts';

// Issue 16: stats() reported 7.3 s of CPU for a sandbox capped at 1 CPU over 5 s of wall time: runsc's own
// figure is its kernel's view of its tasks. The CPU a sandbox costs (and the cap applies to) is the host
// cgroup's accounting; a figure above wall time × CPUs is impossible.
const dataDir = fileURLToPath(new URL('../../../../.cache/test-data/gvisor-cpu', import.meta.url));
mkdirSync(dataDir, { recursive: true });
const image = 'studio-sandbox:latest';
const { seccompProfile, sandboxRootfs } = runtimePaths();

// SMALL_LIMITS: one CPU.
const test = sandboxTest({
  createBackend: () =>
    new GVisorBackend({
      dataDir,
      instanceId: 'gvisor-cpu-test',
      images: { [image]: sandboxRootfs },
      seccompProfile,
    }),
  image,
  labels: { 'studio.test': 'gvisor-cpu' },
  requireRuntime: process.env.CI === 'true',
});

describe('regression: gVisor CPU figures come from the host cgroup', () => {
  test('three busy loops under a 1-CPU cap never report more CPU than wall time', async ({ sandbox }) => {
    const before = await sandbox.stats();
    const started = process.hrtime.bigint();
    await sandbox.exec(
      ['sh', '-c', 'for i in 1 2 3; do timeout 4 sh -c "while :; do :; done" & done; wait'],
      {
        timeoutMs: 30_000,
        maxOutputBytes: 1024,
      },
    );
    const after = await sandbox.stats();
    const wallNs = Number(process.hrtime.bigint() - started);
    const used = after.cpuNanos - before.cpuNanos;
    expect(used).toBeGreaterThan(0.3 * wallNs);
    // 1 CPU: at most the wall time, with a little room for the cgroup's own rounding.
    expect(used).toBeLessThanOrEqual(wallNs * 1.05);
  });
});
