import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe } from 'vitest';
import { TEST_DATA_DIR } from '../testing/api-fixture.ts';
import { dockerApiTest, dockerSkip, dockerTestBackend } from '../testing/docker-api.ts';
import { registryApiOptions } from '../testing/npm-install-cases.ts';
import {
  findPackageSources,
  hostImageCase,
  type TemplateCaseContext,
  templateCases,
  templatePolicy,
} from '../testing/template-cases.ts';

// Issue 19 on Docker: templates built (in gVisor, as every build is) and imported into Docker, sessions from them
// on the Docker backend. The API has a data dir of its own: other test APIs clean up template images theirs do not name.

const IN_CI = process.env.CI === 'true' || process.env.CI === '1';
const DATA_DIR = join(TEST_DATA_DIR, 'templates-docker');
const found = dockerSkip === undefined ? await findPackageSources() : dockerSkip;
if (typeof found === 'string' && dockerSkip === undefined && IN_CI)
  throw new Error(`template tests: ${found}`);
const skip =
  typeof found === 'string' ? found : process.getuid?.() === 0 ? undefined : 'template builds need root';
const sources = typeof found === 'string' ? undefined : found;

const test = dockerApiTest('templates', {
  env: {
    STUDIO_DATA_DIR: DATA_DIR,
    ...(sources ? { STUDIO_POLICY: templatePolicy(sources) } : {}),
  },
  ...(registryApiOptions(sources?.registry).egress
    ? { egress: registryApiOptions(sources?.registry).egress }
    : {}),
});

describe.skipIf(skip !== undefined)(`templates on Docker${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let ctx: TemplateCaseContext;
  test.beforeAll(async ({ api, admin, alice }) => {
    ctx = {
      api,
      client: admin.client,
      other: alice.client,
      backend: 'docker',
      dataDir: DATA_DIR,
      hasImage: (ref) => dockerTestBackend.hasImage(ref),
    };
  });
  templateCases(() => ctx);
  // The operator image under its recipe tag: an image on the host that names no template and no operator image.
  const hash = execFileSync('bash', [
    fileURLToPath(new URL('../../../../infra/image/build.sh', import.meta.url)),
    '--print-hash',
  ])
    .toString()
    .trim();
  hostImageCase(() => ctx, `studio-sandbox:${hash}`);
});
