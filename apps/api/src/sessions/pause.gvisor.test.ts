import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createStudioClient } from '@studio/client';
import { runtimePaths } from '@studio/isolation/testing';
import { GVisorBackend } from '@studio/isolation-gvisor';
import { afterAll, beforeAll, describe } from 'vitest';
import { ADMIN_PASSWORD, startTestApi, TEST_DATA_DIR } from '../testing/api-fixture.ts';
import { residentBytesOf } from '../testing/host-memory.ts';
import { type PauseCaseContext, pauseCases } from '../testing/pause-cases.ts';

// Issue 20 on gVisor: sessions pause with their memory (runsc checkpoint), fork and snapshot with it.

const IN_CI = process.env.CI === 'true' || process.env.CI === '1';
const LABELS = { 'studio.test': 'pause-gvisor' };
const INSTANCE = 'api-test-pause';
const DATA_DIR = join(TEST_DATA_DIR, 'gvisor');
const gvisor = new GVisorBackend({
  dataDir: DATA_DIR,
  instanceId: INSTANCE,
  images: { 'studio-sandbox:latest': runtimePaths().sandboxRootfs },
  seccompProfile: runtimePaths().seccompProfile,
  reconcileOnStart: false,
});
const availability = await gvisor.available();
if (!availability.ok && IN_CI) throw new Error(`gVisor is required in CI: ${availability.reason}`);
const skip = availability.ok ? undefined : availability.reason;

describe.skipIf(skip !== undefined)(
  `pause, fork and snapshots on gVisor${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let ctx: PauseCaseContext;
    beforeAll(async () => {
      const api = await startTestApi({
        backends: [gvisor],
        labels: LABELS,
        env: { STUDIO_INSTANCE_ID: INSTANCE },
      });
      const token = await api.login('admin', ADMIN_PASSWORD);
      ctx = {
        api,
        client: createStudioClient({ url: api.url, token }),
        token,
        memory: true,
        // runsc's sandbox and gofer processes (and the sandbox's stub processes) carry the sandbox's bundle path.
        hostMemoryBytes: (sandboxId) => residentBytesOf(sandboxId),
        damageSavedState: async (sandboxId) => {
          const image = join(gvisor.bundleDir(sandboxId), 'checkpoint', 'checkpoint.img');
          await truncate(image, 64);
          await writeFile(image, 'not a checkpoint', { flag: 'r+' });
        },
      };
    });
    afterAll(async () => {
      for (const s of await gvisor.list({ labels: LABELS }))
        await gvisor.destroy(s.id).catch(() => undefined);
      for (const s of await gvisor.listSnapshots()) await gvisor.deleteSnapshot(s.id).catch(() => undefined);
      await ctx?.api.close();
    });
    pauseCases(() => ctx);
  },
);
