import { dockerSkip, dockerTestBackend } from '../../testing/docker-api.ts';
import { e2bCompatSuite } from './compat-cases.ts';

// Issue 21 on Docker: the e2b SDK (both versions) against Studio. Docker keeps no memory across a pause: the
// pause case asserts the workspace only. Sandboxes are labelled studio.test=e2b-compat and destroyed.

e2bCompatSuite({
  name: 'Docker',
  backend: dockerTestBackend,
  labels: { 'studio.test': 'e2b-compat' },
  memory: false,
  skip: dockerSkip,
});
