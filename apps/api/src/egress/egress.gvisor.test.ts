import { join } from 'node:path';
import { createStudioClient } from '@studio/client';
import { runtimePaths } from '@studio/isolation/testing';
import { GVisorBackend } from '@studio/isolation-gvisor';
import { afterAll, beforeAll, describe } from 'vitest';
import { ADMIN_PASSWORD, startTestApi, TEST_DATA_DIR } from '../testing/api-fixture.ts';
import { type EgressCaseContext, egressCases } from '../testing/egress-cases.ts';
import { EGRESS_NET, type EgressTestNet, egressNetSkip, startEgressTestNet } from '../testing/egress-net.ts';

// Issue 18 on gVisor (runsc with --network=none): the real API and backend, a test network in a namespace, the
// attacks of egress-cases.ts. Traffic leaves only through the agent's channel to the host's egress proxy.

const LABELS = { 'studio.test': 'egress-gvisor' };
const gvisor = new GVisorBackend({
  dataDir: join(TEST_DATA_DIR, 'gvisor'),
  instanceId: 'api-test-egress',
  images: { 'studio-sandbox:latest': runtimePaths().sandboxRootfs },
  seccompProfile: runtimePaths().seccompProfile,
  reconcileOnStart: false,
});
const inCi = process.env.CI === 'true' || process.env.CI === '1';
const availability = await gvisor.available();
if (!availability.ok && inCi) throw new Error(`gVisor is required in CI: ${availability.reason}`);
const netSkip = egressNetSkip();
if (netSkip && inCi) throw new Error(`egress tests: ${netSkip}`);
const skip = availability.ok ? netSkip : availability.reason;

describe.skipIf(skip !== undefined)(`egress on gVisor${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let net: EgressTestNet;
  let ctx: EgressCaseContext;
  beforeAll(async () => {
    net = await startEgressTestNet();
    const api = await startTestApi({
      backends: [gvisor],
      labels: LABELS,
      env: {
        STUDIO_INSTANCE_ID: 'api-test-egress',
        STUDIO_POLICY: JSON.stringify({ egress: { reachableNets: [EGRESS_NET.cidr] } }),
      },
      egress: {
        resolve: (host) => net.resolve(host),
        // The test network's CA, trusted as an operator's STUDIO_EGRESS_CA_FILE would be (read when the API starts).
        get extraCaPem() {
          return net.ca.certPem;
        },
      },
    });
    const client = createStudioClient({ url: api.url, token: await api.login('admin', ADMIN_PASSWORD) });
    ctx = { api, client, net, backend: 'gvisor' };
  });
  afterAll(async () => {
    for (const s of await gvisor.list({ labels: LABELS })) await gvisor.destroy(s.id).catch(() => undefined);
    await ctx?.api.close();
    await net?.close();
  });
  egressCases(() => ctx);
});
