import { afterAll, beforeAll, describe } from 'vitest';
import { connectCases } from './cases/connect.ts';
import { execCases } from './cases/exec.ts';
import { filesCases } from './cases/files.ts';
import { filesEscapeCases } from './cases/files-escape.ts';
import { cleanupCases, lifecycleCases } from './cases/lifecycle.ts';
import { resourceCases } from './cases/resources.ts';
import { securityCases } from './cases/security.ts';
import { snapshotCases } from './cases/snapshots.ts';
import { terminalCases } from './cases/terminal.ts';
import { ConformanceHarness, type ConformanceOptions } from './harness.ts';

export { CONFORMANCE_CASE_IDS, type ConformanceCaseId } from './case-ids.ts';
export { type ConformanceOptions, SHARED_LIMITS, SMALL_LIMITS } from './harness.ts';
export { type RuntimePaths, runtimePaths } from './runtime-paths.ts';
export { type SandboxTestOptions, sandboxTest } from './sandbox-test.ts';

/**
 * Registers the isolation conformance suite (vitest `describe`/`it`): the behaviour of the contract in
 * `types.ts` and the attacks of SECURITY.md §1-2, run against one backend. Every backend's
 * `conformance.<runtime>.test.ts` calls it once; a case the backend cannot pass is skipped by id with a
 * written reason, never deleted.
 *
 * Every sandbox the suite creates carries the labels `conformance.suite=isolation` and
 * `conformance.run=<random>` and is destroyed even when a case fails; the last case checks that the backend
 * lists none of them.
 *
 * @example
 * ```ts
 * runIsolationConformance({
 *   createBackend: () => new DockerBackend({ dataDir, seccompProfile: runtimePaths().seccompProfile }),
 *   image: 'studio-sandbox:latest',
 *   requireRuntime: process.env.CI === 'true',
 *   hostPath: dataDir,
 *   skip: { 'security.seccomp': 'gVisor filters syscalls in its own kernel: Seccomp reads 0' },
 * });
 * ```
 */
export function runIsolationConformance(options: ConformanceOptions): void {
  const h = new ConformanceHarness(options);
  describe('isolation conformance', () => {
    beforeAll(async () => {
      // Nested describe bodies run after this one, so the completeness check waits until collection is over.
      h.assertAllRegistered();
      await h.setup();
    }, 300_000);
    afterAll(() => h.teardown(), 300_000);
    lifecycleCases(h);
    execCases(h);
    terminalCases(h);
    filesCases(h);
    connectCases(h);
    securityCases(h);
    filesEscapeCases(h);
    resourceCases(h);
    snapshotCases(h);
    cleanupCases(h);
  });
}
