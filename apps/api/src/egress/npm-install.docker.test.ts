import { describe } from 'vitest';
import { dockerApiTest, dockerSkip } from '../testing/docker-api.ts';
import {
  findRegistry,
  type NpmInstallContext,
  npmInstallCases,
  type Registry,
  registryApiOptions,
} from '../testing/npm-install-cases.ts';

// Issue 18's npm end to end on Docker (npm-install-cases.ts): the real registry this machine's npm names.

const found = dockerSkip === undefined ? await findRegistry() : dockerSkip;
if (
  typeof found === 'string' &&
  dockerSkip === undefined &&
  (process.env.CI === 'true' || process.env.CI === '1')
)
  throw new Error(`npm install test: ${found}`);
const skip = typeof found === 'string' ? found : undefined;
const registry = typeof found === 'string' ? undefined : found;

const test = dockerApiTest('npm-install', registryApiOptions(registry));

describe.skipIf(skip !== undefined)(
  `npm install through the egress proxy on Docker${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let ctx: NpmInstallContext;
    test.beforeAll(async ({ api, alice }) => {
      ctx = { api, client: alice.client, backend: 'docker' };
    });
    npmInstallCases(() => ctx, registry as Registry);
  },
);
