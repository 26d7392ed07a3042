import { join } from 'node:path';
import { createStudioClient } from '@studio/client';
import { runtimePaths } from '@studio/isolation/testing';
import { GVisorBackend } from '@studio/isolation-gvisor';
import { afterAll, beforeAll, describe } from 'vitest';
import { ADMIN_PASSWORD, startTestApi, TEST_DATA_DIR } from '../testing/api-fixture.ts';
import {
  findRegistry,
  type NpmInstallContext,
  npmInstallCases,
  type Registry,
  registryApiOptions,
} from '../testing/npm-install-cases.ts';

// Issue 18's npm end to end on gVisor (npm-install-cases.ts), where the sandbox has no network at all and npm's
// connections reach the egress proxy through the agent's channel.

const IN_CI = process.env.CI === 'true' || process.env.CI === '1';
const LABELS = { 'studio.test': 'npm-install-gvisor' };
const INSTANCE = 'api-test-npm';
const gvisor = new GVisorBackend({
  dataDir: join(TEST_DATA_DIR, 'gvisor'),
  instanceId: INSTANCE,
  images: { 'studio-sandbox:latest': runtimePaths().sandboxRootfs },
  seccompProfile: runtimePaths().seccompProfile,
  reconcileOnStart: false,
});
const availability = await gvisor.available();
if (!availability.ok && IN_CI) throw new Error(`gVisor is required in CI: ${availability.reason}`);
const found = availability.ok ? await findRegistry() : availability.reason;
if (typeof found === 'string' && availability.ok && IN_CI) throw new Error(`npm install test: ${found}`);
const skip = typeof found === 'string' ? found : undefined;
const registry = typeof found === 'string' ? undefined : found;

describe.skipIf(skip !== undefined)(
  `npm install through the egress proxy on gVisor${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let ctx: NpmInstallContext;
    beforeAll(async () => {
      const options = registryApiOptions(registry);
      const api = await startTestApi({
        backends: [gvisor],
        labels: LABELS,
        env: { ...options.env, STUDIO_INSTANCE_ID: INSTANCE },
        ...(options.egress ? { egress: options.egress } : {}),
      });
      const client = createStudioClient({ url: api.url, token: await api.login('admin', ADMIN_PASSWORD) });
      ctx = { api, client, backend: 'gvisor' };
    });
    afterAll(async () => {
      for (const s of await gvisor.list({ labels: LABELS }))
        await gvisor.destroy(s.id).catch(() => undefined);
      await ctx?.api.close();
    });
    npmInstallCases(() => ctx, registry as Registry);
  },
);
