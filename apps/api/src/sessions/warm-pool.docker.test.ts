import { join } from 'node:path';
import { createStudioClient, type StudioClient } from '@studio/client';
import { runtimePaths } from '@studio/isolation/testing';
import { DockerBackend } from '@studio/isolation-docker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_PASSWORD,
  skipUnlessAvailable,
  startTestApi,
  TEST_DATA_DIR,
  type TestApi,
} from '../testing/api-fixture.ts';

// The warm pool on the real DockerBackend: size 1, a create claims the pooled sandbox (recorded in the store),
// its workspace is empty even if something was written into it, the pool refills, and reconciliation leaves
// pool sandboxes alone. Everything is labelled studio.test=api-pool and destroyed in afterAll.

const IMAGE = 'studio-sandbox:latest';
const LABELS = { 'studio.test': 'api-pool' };
const INSTANCE = 'api-test-pool';
const backend = new DockerBackend({
  dataDir: join(TEST_DATA_DIR, 'docker'),
  instanceId: INSTANCE,
  seccompProfile: runtimePaths().seccompProfile,
});
const skip = await skipUnlessAvailable(backend);

async function until<T>(fn: () => Promise<T | undefined>, what: string, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const poolIds = async () =>
  (await backend.list({ labels: { ...LABELS, 'studio.session': 'pool' } })).map((s) => s.id);

describe.skipIf(skip !== undefined)(`warm pool on Docker${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let t: TestApi;
  let client: StudioClient;

  beforeAll(async () => {
    t = await startTestApi({
      backends: [backend],
      labels: LABELS,
      env: { STUDIO_INSTANCE_ID: INSTANCE, STUDIO_WARM_POOL: 'docker=1', STUDIO_ORPHAN_GRACE_MS: '0' },
    });
    client = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
  });

  afterAll(async () => {
    await t?.close(); // destroys what waits in the pool
    for (const s of await backend.list({ labels: LABELS }))
      await backend.destroy(s.id).catch(() => undefined);
  });

  it('create claims the pooled sandbox, reset, and the pool refills; reconciliation keeps pool sandboxes', async () => {
    const sessions = t.app.deps.sessions;
    await sessions.startPool();
    const warm = await until(async () => {
      const ready = sessions.pool?.status()[`docker/${IMAGE}`]?.ready;
      return ready === 1 ? (await poolIds())[0] : undefined;
    }, 'the pool to fill');
    // Never handed out yet, but prove the reset anyway: dirty the waiting sandbox's workspace.
    await (await backend.get(warm)).writeFile('left-over.txt', 'x');
    expect((await sessions.reconcile()).orphansRemoved).toEqual([]); // grace 0, still not an orphan

    const s = await client.sessions.create.mutate({ image: IMAGE });
    expect(sessions.wasPooled(s.id)).toBe(true);
    expect((await t.app.deps.store.getSessionById(s.id))?.sandboxId).toBe(warm);
    const ls = await client.exec.run.mutate({ sessionId: s.id, command: ['ls', '-A', '/workspace'] });
    expect(ls).toMatchObject({ exitCode: 0, stdout: '' });

    const refill = await until(async () => {
      const ids = (await poolIds()).filter((id) => id !== warm);
      return ids.length === 1 && sessions.pool?.status()[`docker/${IMAGE}`]?.ready === 1 ? ids[0] : undefined;
    }, 'the pool to refill');
    expect(refill).not.toBe(warm);
    // A session from the pool is adopted by reconciliation like any other.
    expect((await sessions.reconcile()).adopted).toEqual([s.id]);

    // Other resources than the default never claim: a cold create.
    const cold = await client.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 300 } });
    expect(sessions.wasPooled(cold.id)).toBe(false);
    for (const id of [s.id, cold.id]) await client.sessions.destroy.mutate({ sessionId: id });
    expect(await backend.list({ labels: { 'studio.session': cold.id } })).toEqual([]);
  });
});
