import { join } from 'node:path';
import { createStudioClient, type EventSourceConstructor, type StudioClient } from '@studio/client';
import { runtimePaths } from '@studio/isolation/testing';
import { DockerBackend } from '@studio/isolation-docker';
import { EventSource } from 'eventsource';
import { test } from 'vitest';
import {
  ADMIN_PASSWORD,
  skipUnlessAvailable,
  startTestApi,
  TEST_DATA_DIR,
  type TestApi,
} from './api-fixture.ts';

/** The Docker backend the API's Docker tests share (instance `api-test`; each file labels its sandboxes). */
export const dockerTestBackend = new DockerBackend({
  dataDir: join(TEST_DATA_DIR, 'docker'),
  instanceId: 'api-test',
  seccompProfile: runtimePaths().seccompProfile,
});

/** Why the API's Docker tests skip (undefined: they run); in CI a missing Docker throws instead. */
export const dockerSkip = await skipUnlessAvailable(dockerTestBackend);

/** The `eventsource` package as the client's EventSource (Node has none built in). */
export const ES = EventSource as unknown as EventSourceConstructor;

/** A signed-in person: their client (with EventSource, for subscriptions) and login token. */
export interface SignedIn {
  client: StudioClient;
  token: string;
}

async function signIn(api: TestApi, username: string, password: string): Promise<SignedIn> {
  const token = await api.login(username, password);
  return { client: createStudioClient({ url: api.url, token, EventSource: ES }), token };
}

async function addUser(api: TestApi, admin: SignedIn, username: string, password: string) {
  await admin.client.users.create.mutate({ username, password });
  return signIn(api, username, password);
}

/** Options of the API a file starts (everything {@link startTestApi} takes but the backend and labels). */
export type DockerApiOptions = Omit<Parameters<typeof startTestApi>[0], 'backends' | 'labels'>;

/**
 * A `test` whose file-scoped fixtures are the real API on the shared Docker backend, with its sandboxes labelled
 * `studio.test=<label>` and all of them destroyed when the file ends, and three people signed in: `admin`,
 * `alice` and `bob` (another user, for ownership checks). Use it as `test.beforeAll(({ api, alice }) => …)`
 * or in tests directly.
 */
export function dockerApiTest(label: string, options: DockerApiOptions = {}) {
  const labels = { 'studio.test': label };
  return (
    test
      // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this pattern
      .extend('api', { scope: 'file' }, async ({}, { onCleanup }) => {
        const api = await startTestApi({ ...options, backends: [dockerTestBackend], labels });
        onCleanup(async () => {
          await api.close(); // destroys what waits in a warm pool
          for (const s of await dockerTestBackend.list({ labels })) {
            await dockerTestBackend.destroy(s.id).catch(() => undefined);
          }
        });
        return api;
      })
      .extend('admin', { scope: 'file' }, ({ api }) => signIn(api, 'admin', ADMIN_PASSWORD))
      .extend('alice', { scope: 'file' }, ({ api, admin }) =>
        addUser(api, admin, 'alice', 'alice-password-1'),
      )
      .extend('bob', { scope: 'file' }, ({ api, admin }) => addUser(api, admin, 'bob', 'bob-password-12'))
  );
}
