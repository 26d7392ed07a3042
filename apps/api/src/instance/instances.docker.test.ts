import { mkdtempSync, readFileSync } from 'node:fs';
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

// Two APIs on one host with default settings (no STUDIO_INSTANCE_ID), each with its own data dir, as two
// checkouts or two `npm start`s would run. Each reconciles with orphans removed at once: neither may touch the
// other's sandboxes. With the old host-name default both had the same id and removed each other's after 60 s.

const skip = await skipUnlessAvailable(
  new DockerBackend({
    dataDir: join(TEST_DATA_DIR, 'docker'),
    seccompProfile: runtimePaths().seccompProfile,
  }),
);
const IMAGE = 'studio-sandbox:latest';

async function startDefault(dataDir: string): Promise<TestApi> {
  return startTestApi({
    claim: true,
    db: 'data-dir',
    env: {
      STUDIO_DATA_DIR: dataDir,
      STUDIO_INSTANCE_ID: '',
      STUDIO_BACKENDS: 'docker',
      STUDIO_ORPHAN_GRACE_MS: '0',
    },
  });
}

describe.skipIf(skip !== undefined)(
  `two APIs on one host with default settings${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    const dirs = [0, 1].map(() => mkdtempSync(join(TEST_DATA_DIR, 'instance-')));
    const apis: TestApi[] = [];
    const clients: StudioClient[] = [];
    const sessions: string[] = [];

    beforeAll(async () => {
      for (const dir of dirs) {
        const api = await startDefault(dir);
        apis.push(api);
        clients.push(createStudioClient({ url: api.url, token: await api.login('admin', ADMIN_PASSWORD) }));
      }
    });

    afterAll(async () => {
      for (const [i, c] of clients.entries()) {
        const id = sessions[i];
        if (id) await c.sessions.destroy.mutate({ sessionId: id }).catch(() => undefined);
      }
      for (const api of apis) await api.close();
    });

    it('derive different instance ids from their data dirs and keep each other’s sessions', async () => {
      const [a, b] = apis as [TestApi, TestApi];
      expect(a.app.env.instanceId).toMatch(/^api-[0-9a-f]{16}$/);
      expect(b.app.env.instanceId).toMatch(/^api-[0-9a-f]{16}$/);
      expect(a.app.env.instanceId).not.toBe(b.app.env.instanceId);
      for (const [i, dir] of dirs.entries()) {
        expect(readFileSync(join(dir, 'instance-id'), 'utf8').trim()).toBe(apis[i]?.app.env.instanceId);
      }

      for (const [i, c] of clients.entries()) {
        const s = await c.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 256 } });
        sessions.push(s.id);
        await c.files.write.mutate({ sessionId: s.id, path: 'mine.txt', content: `api ${i}\n` });
      }
      // Orphan grace is 0: a sandbox either API counted as an orphan would be removed right here.
      for (let round = 0; round < 2; round++) {
        for (const api of apis) await api.app.deps.sessions.reconcile();
      }
      for (const [i, c] of clients.entries()) {
        const sessionId = sessions[i] as string;
        expect((await c.sessions.get.query({ sessionId })).state).toBe('running');
        const out = await c.exec.run.mutate({ sessionId, command: ['cat', 'mine.txt'] });
        expect(out.stdout).toBe(`api ${i}\n`);
      }
    });

    it('a third API on a data dir in use is refused, naming the fix', async () => {
      await expect(startDefault(dirs[0] as string)).rejects.toMatchObject({
        code: 'INVALID_STATE',
        message: expect.stringContaining('STUDIO_DATA_DIR'),
      });
    });

    it('the same explicit instance id on another data dir is refused while the first runs', async () => {
      const dir = mkdtempSync(join(TEST_DATA_DIR, 'instance-'));
      await expect(
        startTestApi({
          claim: true,
          env: {
            STUDIO_DATA_DIR: dir,
            STUDIO_INSTANCE_ID: (apis[0] as TestApi).app.env.instanceId,
            STUDIO_BACKENDS: 'docker',
          },
        }),
      ).rejects.toMatchObject({
        code: 'INVALID_STATE',
        message: expect.stringContaining('STUDIO_INSTANCE_ID'),
      });
    });
  },
);
