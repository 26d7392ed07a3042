import { join } from 'node:path';
import { createStudioClient, type StudioClient } from '@studio/client';
import { runtimePaths } from '@studio/isolation/testing';
import { DockerBackend } from '@studio/isolation-docker';
import { GVisorBackend } from '@studio/isolation-gvisor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendsFromEnv } from '../app.ts';
import { parseEnv } from '../env.ts';
import { ADMIN_PASSWORD, startTestApi, TEST_DATA_DIR, type TestApi } from '../testing/api-fixture.ts';

// The real API with the real GVisorBackend (runsc) beside Docker: backends.list reports both, and a session
// created with backend 'gvisor' runs files and exec. Every sandbox is labelled studio.test=api-gvisor and
// destroyed in afterAll.

const IMAGE = 'studio-sandbox:latest';
const LABELS = { 'studio.test': 'api-gvisor' };
const gvisor = new GVisorBackend({
  dataDir: join(TEST_DATA_DIR, 'gvisor'),
  instanceId: 'api-test-gvisor',
  images: { [IMAGE]: runtimePaths().sandboxRootfs },
  seccompProfile: runtimePaths().seccompProfile,
  reconcileOnStart: false,
});
const docker = new DockerBackend({
  dataDir: join(TEST_DATA_DIR, 'docker'),
  instanceId: 'api-test-gvisor',
  seccompProfile: runtimePaths().seccompProfile,
});
const availability = await gvisor.available();
const inCi = process.env.CI === 'true' || process.env.CI === '1';
if (!availability.ok && inCi) throw new Error(`gVisor is required in CI: ${availability.reason}`);
const skip = availability.ok ? undefined : availability.reason;

describe.skipIf(skip !== undefined)(`API on gVisor${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let t: TestApi;
  let client: StudioClient;

  beforeAll(async () => {
    t = await startTestApi({
      backends: [docker, gvisor],
      labels: LABELS,
      env: { STUDIO_INSTANCE_ID: 'api-test-gvisor' },
    });
    client = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
  });

  afterAll(async () => {
    for (const s of await gvisor.list({ labels: LABELS })) await gvisor.destroy(s.id).catch(() => undefined);
    await t?.close();
  });

  it('STUDIO_BACKENDS=auto builds Docker and gVisor (the rootfs from build.sh --print-rootfs)', () => {
    // Its own data directory: a GVisorBackend reconciles its state directory when constructed.
    const built = backendsFromEnv({
      ...parseEnv({ STUDIO_BACKENDS: 'auto', STUDIO_DATA_DIR: join(TEST_DATA_DIR, 'auto-probe') }),
      instanceId: 'api-test-auto-probe',
    });
    expect(built.map((b) => b.name)).toEqual(['docker', 'gvisor']);
    return Promise.all(built.map((b) => b.close()));
  });

  it('backends.list reports both with capabilities', async () => {
    const list = await client.backends.list.query();
    expect(list.map((b) => b.name)).toEqual(['docker', 'gvisor']);
    const g = list.find((b) => b.name === 'gvisor');
    expect(g).toMatchObject({ available: true, reason: null, capabilities: { terminal: true } });
  });

  it('creates a gVisor session, writes a file and execs in it, then destroys it', async () => {
    const s = await client.sessions.create.mutate({
      backend: 'gvisor',
      image: IMAGE,
      resources: { memoryMb: 256, diskMb: 64 },
    });
    try {
      expect(s).toMatchObject({ backend: 'gvisor', state: 'running' });
      await client.files.write.mutate({ sessionId: s.id, path: 'hello.txt', content: 'from gvisor\n' });
      const run = await client.exec.run.mutate({
        sessionId: s.id,
        command: ['cat', 'hello.txt'],
      });
      expect(run.exitCode).toBe(0);
      expect(run.stdout).toContain('from gvisor');
      const info = await gvisor.list({ labels: { 'studio.session': s.id } });
      expect(info).toHaveLength(1);
    } finally {
      expect((await client.sessions.destroy.mutate({ sessionId: s.id })).state).toBe('destroyed');
    }
    expect(await gvisor.list({ labels: { 'studio.session': s.id } })).toEqual([]);
  });

  it('a memory bomb stops the session at once, with the reason; sessions.start brings it back', async () => {
    const s = await client.sessions.create.mutate({
      backend: 'gvisor',
      image: IMAGE,
      resources: { memoryMb: 256, diskMb: 64 },
    });
    try {
      await client.files.write.mutate({ sessionId: s.id, path: 'kept.txt', content: 'kept\n' });
      // The sandbox's kernel is one host process under the memory limit: the bomb takes the whole sandbox.
      const bomb = await client.exec.run
        .mutate({
          sessionId: s.id,
          command: ['python3', '-c', 'l = []\nwhile True:\n    l.append(b"x" * (16 << 20))'],
          timeoutMs: 90_000,
        })
        .then(
          (r) => ({ ok: true as const, r }),
          (error: unknown) => ({ ok: false as const, error }),
        );
      if (bomb.ok) {
        // The OOM killer took only the bomb: the sandbox lived, so the session must too.
        expect(bomb.r.oomKilled).toBe(true);
        expect((await client.sessions.get.query({ sessionId: s.id })).state).toBe('running');
        return;
      }
      expect(bomb.error).toMatchObject({ code: 'RESOURCE_LIMIT' });
      // At once, without a reconciliation.
      const now = await client.sessions.get.query({ sessionId: s.id });
      expect(now.state).toBe('stopped');
      expect(now.stopReason).toMatch(/memory/);
      expect((await client.sessions.start.mutate({ sessionId: s.id })).state).toBe('running');
      const after = await client.exec.run.mutate({ sessionId: s.id, command: ['cat', 'kept.txt'] });
      expect(after.stdout).toBe('kept\n');
    } finally {
      await client.sessions.destroy.mutate({ sessionId: s.id });
    }
  });
});
