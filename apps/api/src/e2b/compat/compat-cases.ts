import type { IsolationBackend } from '@studio/isolation';
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  type CompatHarness,
  installSdk,
  type Routing,
  removeSdkInstalls,
  type SdkInstall,
  sdkVersions,
  startCompatHarness,
} from './harness.ts';

// Issue 21's "done when", on one backend (e2b-compat.docker.test.ts, e2b-compat.gvisor.test.ts): the unmodified
// `e2b` SDK, installed outside the repository as a user would, drives Studio. Each case is a run of
// scenario.mjs in its own process; its assertion error is this test's. Two SDK versions: the current one with
// envd behind one URL routed by the E2b-Sandbox-Id header (E2B_SANDBOX_URL), and 2.10 reaching envd by host name
// over TLS (`https://49983-<id>.<domain>`, the default without E2B_SANDBOX_URL), both with getHost over TLS.

/** The cases of scenario.mjs, in the order they run. */
export const E2B_COMPAT_CASES = [
  'install',
  'lifecycle',
  'commands',
  'files',
  'pty',
  'pause',
  'gethost',
  'errors',
  'isolation',
  'takeover',
] as const;

export type E2bCompatCase = (typeof E2B_COMPAT_CASES)[number];

/** What a test file gives the suite. */
export interface E2bCompatOptions {
  /** `Docker` or `gVisor`: names the describe blocks. */
  name: string;
  backend: IsolationBackend;
  /** Labels of this file's sandboxes (destroyed at the end). */
  labels: Record<string, string>;
  /** Whether a paused sandbox keeps its memory (gVisor's checkpoint). */
  memory: boolean;
  /** Why the suite cannot run here (undefined: it runs). */
  skip: string | undefined;
  env?: Record<string, string>;
  /** Cases this backend cannot pass, each with its reason. */
  skipCases?: Partial<Record<E2bCompatCase, string>>;
}

/** The SDK versions and how each reaches envd. */
export function e2bCompatRuns(): Array<{ version: string; routing: Routing }> {
  const { latest, older } = sdkVersions();
  return [
    { version: latest, routing: 'header' },
    { version: older, routing: 'host' },
  ];
}

const CASE_TIMEOUT_MS = 300_000;

/** The suite: one `describe` per SDK version, one `it` per case. */
export function e2bCompatSuite(options: E2bCompatOptions): void {
  for (const id of Object.keys(options.skipCases ?? {}))
    if (!(E2B_COMPAT_CASES as readonly string[]).includes(id))
      throw new Error(`skipCases names no case ${id}`);
  describe.skipIf(options.skip !== undefined)(
    `the e2b SDK drives Studio on ${options.name}${options.skip ? ` (skipped: ${options.skip})` : ''}`,
    () => {
      let harness: CompatHarness;
      const sdks = new Map<string, SdkInstall>();
      beforeAll(async () => {
        const runs = e2bCompatRuns();
        // The installs (npm cache) and Studio's start-up overlap.
        const [h, ...installed] = await Promise.all([
          startCompatHarness({
            backend: options.backend,
            labels: options.labels,
            ...(options.env ? { env: options.env } : {}),
          }),
          ...runs.map((r) => installSdk(r.version)),
        ]);
        harness = h;
        for (const sdk of installed) sdks.set(sdk.version, sdk);
      });
      afterAll(async () => {
        await harness?.close();
        removeSdkInstalls();
      });

      for (const { version, routing } of e2bCompatRuns()) {
        describe(`e2b ${version}, envd by ${routing === 'header' ? 'E2B_SANDBOX_URL (header routing)' : 'host name over TLS'}`, () => {
          for (const name of E2B_COMPAT_CASES) {
            const reason = options.skipCases?.[name];
            it.skipIf(reason !== undefined)(
              `${name}${reason ? ` (skipped: ${reason})` : ''}`,
              { timeout: CASE_TIMEOUT_MS + 30_000 },
              async () => {
                const sdk = sdks.get(version);
                if (!sdk) throw new Error(`e2b ${version} is not installed`);
                const r = await harness.runCase(sdk, name, {
                  routing,
                  memory: options.memory,
                  timeoutMs: CASE_TIMEOUT_MS,
                });
                if (!r.ok) {
                  const stderr = r.stderr.trim() ? `\n--- the SDK's stderr ---\n${r.stderr.trim()}` : '';
                  throw new Error(`e2b ${version} ${name}: ${r.error}${stderr}`);
                }
                for (const n of r.notes ?? []) console.info(`[e2b ${version} ${name}] ${n}`);
              },
            );
          }
        });
      }
    },
  );
}
