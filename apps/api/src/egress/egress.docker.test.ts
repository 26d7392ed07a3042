import { afterAll, beforeAll, describe } from 'vitest';
import { dockerApiTest, dockerSkip } from '../testing/docker-api.ts';
import { type EgressCaseContext, egressCases } from '../testing/egress-cases.ts';
import { EGRESS_NET, type EgressTestNet, egressNetSkip, startEgressTestNet } from '../testing/egress-net.ts';

// Issue 18 on Docker: the real API and backend, a test network in a namespace, the attacks of egress-cases.ts.

const netSkip = egressNetSkip();
if (netSkip && (process.env.CI === 'true' || process.env.CI === '1'))
  throw new Error(`egress tests: ${netSkip}`);
const skip = dockerSkip ?? netSkip;

let net: EgressTestNet;
beforeAll(async () => {
  if (skip === undefined) net = await startEgressTestNet();
});
afterAll(async () => net?.close());

const test = dockerApiTest('egress', {
  env: { STUDIO_POLICY: JSON.stringify({ egress: { reachableNets: [EGRESS_NET.cidr] } }) },
  egress: {
    resolve: (host) => net.resolve(host),
    // The test network's CA, trusted as an operator's STUDIO_EGRESS_CA_FILE would be (read when the API starts).
    get extraCaPem() {
      return net.ca.certPem;
    },
  },
});

describe.skipIf(skip !== undefined)(`egress on Docker${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let ctx: EgressCaseContext;
  test.beforeAll(async ({ api, alice }) => {
    ctx = { api, client: alice.client, net, backend: 'docker' };
  });
  egressCases(() => ctx);
});
