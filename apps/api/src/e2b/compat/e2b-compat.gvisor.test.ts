import { join } from 'node:path';
import { runtimePaths } from '@studio/isolation/testing';
import { GVisorBackend } from '@studio/isolation-gvisor';
import { skipUnlessAvailable, TEST_DATA_DIR } from '../../testing/api-fixture.ts';
import { e2bCompatSuite } from './compat-cases.ts';

// Issue 21 on gVisor: the e2b SDK (both versions) against Studio; a paused sandbox keeps its memory (runsc
// checkpoint), so the pause case also asserts a background process carried on. Sandboxes are labelled
// studio.test=e2b-compat-gvisor and destroyed.

const INSTANCE = 'api-test-e2b';
const gvisor = new GVisorBackend({
  dataDir: join(TEST_DATA_DIR, 'gvisor'),
  instanceId: INSTANCE,
  images: { 'studio-sandbox:latest': runtimePaths().sandboxRootfs },
  seccompProfile: runtimePaths().seccompProfile,
  reconcileOnStart: false,
});

e2bCompatSuite({
  name: 'gVisor',
  backend: gvisor,
  labels: { 'studio.test': 'e2b-compat-gvisor' },
  memory: true,
  skip: await skipUnlessAvailable(gvisor, 'gVisor'),
  env: { STUDIO_INSTANCE_ID: INSTANCE },
});
