import {
  CONFORMANCE_CASE_IDS,
  type ConformanceCaseId,
  runIsolationConformance,
} from '@studio/isolation/testing';
import { FakeBackend, type FakeSandbox } from './fake-backend.ts';

// The API's unit tests stand on this fake, so it keeps the contract: the same suite as the real backends. It
// runs the real agent as a host process, so what needs a real sandbox (its own kernel view, user, network and
// limits) is skipped, by prefix so that a case added later is skipped too rather than run on the host.
const NEEDS_A_SANDBOX: Record<string, string> = {
  'security.':
    'attacks on the isolation itself: the fake is no sandbox (its agent is a host process), and the attacks would run against the host',
  'resources.':
    'resource limits need a runtime to enforce them (cgroups, quotas); a fork or memory bomb would hit the host',
  'files-escape.':
    "the scene plants its secrets in the sandbox's own /tmp and /etc, which for a host process are the host's; the agent's attack tests (packages/sandbox-agent/src/attacks.test.ts) run the same escapes against a temporary directory",
};
const skip: Partial<Record<ConformanceCaseId, string>> = {
  ...Object.fromEntries(
    CONFORMANCE_CASE_IDS.flatMap((id) =>
      Object.entries(NEEDS_A_SANDBOX)
        .filter(([prefix]) => id.startsWith(prefix))
        .map(([, reason]) => [id, reason]),
    ),
  ),
  'exec.zombies-reaped':
    "needs the sandbox's own PID namespace and init; the fake's orphans are reparented to the host's",
  'files.owner-uid': 'needs the sandbox user 1000:1000; the fake writes as the user running the tests',
  'connect.isolated-per-sandbox':
    "needs a network namespace per sandbox; every fake sandbox's loopback is the host's",
  'connect.never-reaches-host': "needs a network namespace; the fake's loopback is the host's",
};

const backend = new FakeBackend('fake');

runIsolationConformance({
  createBackend: () => backend,
  image: 'studio-sandbox:latest',
  requireRuntime: true,
  // Workspaces and agent homes are named after their sandbox: the last case checks none is left.
  hostPath: backend.root,
  workspacePath: (sandbox) => (sandbox as FakeSandbox).workspace,
  skip,
});
