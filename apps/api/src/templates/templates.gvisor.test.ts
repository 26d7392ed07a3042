import { join } from 'node:path';
import { createStudioClient } from '@studio/client';
import { runtimePaths } from '@studio/isolation/testing';
import { GVisorBackend } from '@studio/isolation-gvisor';
import { afterAll, beforeAll, describe } from 'vitest';
import { templatesDir } from '../app.ts';
import { ADMIN_PASSWORD, startTestApi, TEST_DATA_DIR } from '../testing/api-fixture.ts';
import { registryApiOptions } from '../testing/npm-install-cases.ts';
import {
  findPackageSources,
  type TemplateCaseContext,
  templateCases,
  templatePolicy,
} from '../testing/template-cases.ts';
import { templateRootfs } from './template-manager.ts';

// Issue 19 on gVisor: templates built in gVisor, sessions from them on the gVisor backend, which runs a template's
// root filesystem from where the build left it (resolveImage). Its own data dir, as the Docker file.

const IN_CI = process.env.CI === 'true' || process.env.CI === '1';
const LABELS = { 'studio.test': 'templates-gvisor' };
const INSTANCE = 'api-test-templates';
const DATA_DIR = join(TEST_DATA_DIR, 'templates-gvisor');
const gvisor = new GVisorBackend({
  dataDir: join(TEST_DATA_DIR, 'gvisor'),
  instanceId: INSTANCE,
  images: { 'studio-sandbox:latest': runtimePaths().sandboxRootfs },
  resolveImage: (image) => templateRootfs(templatesDir({ dataDir: DATA_DIR }), image),
  seccompProfile: runtimePaths().seccompProfile,
  reconcileOnStart: false,
});
const availability = await gvisor.available();
if (!availability.ok && IN_CI) throw new Error(`gVisor is required in CI: ${availability.reason}`);
const found = availability.ok ? await findPackageSources() : availability.reason;
if (typeof found === 'string' && availability.ok && IN_CI) throw new Error(`template tests: ${found}`);
const skip = typeof found === 'string' ? found : undefined;
const sources = typeof found === 'string' ? undefined : found;

describe.skipIf(skip !== undefined)(`templates on gVisor${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let ctx: TemplateCaseContext;
  beforeAll(async () => {
    const egress = registryApiOptions(sources?.registry).egress;
    const api = await startTestApi({
      backends: [gvisor],
      labels: LABELS,
      env: {
        STUDIO_INSTANCE_ID: INSTANCE,
        STUDIO_DATA_DIR: DATA_DIR,
        ...(sources ? { STUDIO_POLICY: templatePolicy(sources) } : {}),
      },
      ...(egress ? { egress } : {}),
    });
    const admin = createStudioClient({ url: api.url, token: await api.login('admin', ADMIN_PASSWORD) });
    await admin.users.create.mutate({ username: 'alice', password: 'alice-password-1' });
    const other = createStudioClient({ url: api.url, token: await api.login('alice', 'alice-password-1') });
    ctx = { api, client: admin, other, backend: 'gvisor', dataDir: DATA_DIR };
  });
  afterAll(async () => {
    for (const s of await gvisor.list({ labels: LABELS })) await gvisor.destroy(s.id).catch(() => undefined);
    await ctx?.api.close();
  });
  templateCases(() => ctx);
});
