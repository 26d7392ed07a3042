import { test } from 'vitest';
import type { IsolationBackend, ResourceLimits, Sandbox } from '../types.ts';
import { oneLine, SMALL_LIMITS } from './harness.ts';

/** Options of {@link sandboxTest}. */
export interface SandboxTestOptions<B extends IsolationBackend = IsolationBackend> {
  /** Builds the backend under test; called once per file, closed when the file's tests are done. */
  createBackend: () => B | Promise<B>;
  /** The image of the `sandbox` fixture. */
  image: string;
  /** Limits of the `sandbox` fixture; default the conformance suite's small sandbox. */
  limits?: ResourceLimits;
  /** Labels of the `sandbox` fixture, so a leak can be found (`studio.test` is one a caller may set). */
  labels: Record<string, string>;
  /**
   * True in CI: an unavailable runtime fails every test that uses a fixture. False: those tests skip with the
   * one-line reason of `backend.available()`.
   */
  requireRuntime: boolean;
}

interface Runtime<B extends IsolationBackend> {
  backend: B | undefined;
  unavailable: string | undefined;
}

/**
 * A vitest `test` with backend fixtures, for backend tests beyond the conformance suite (E2B SDK style: the
 * set-up lives in one place, not copied into every file):
 *
 * - `backend`: built once per file and closed after its last test; a test that uses it skips (or, with
 *   `requireRuntime`, fails) when the runtime is unavailable.
 * - `sandbox`: one sandbox per file, created on first use and destroyed by the fixture after the file's last
 *   test, whatever the tests did.
 *
 * @example
 * ```ts
 * const test = sandboxTest({
 *   createBackend: () => new DockerBackend({ dataDir, seccompProfile: runtimePaths().seccompProfile }),
 *   image: 'studio-sandbox:latest',
 *   labels: { 'studio.test': 'my-regression' },
 *   requireRuntime: process.env.CI === 'true',
 * });
 * test('refuses …', async ({ sandbox }) => { … });
 * ```
 */
export function sandboxTest<B extends IsolationBackend = IsolationBackend>(options: SandboxTestOptions<B>) {
  return (
    test
      // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this pattern
      .extend('runtime', { scope: 'file' }, async ({}, { onCleanup }): Promise<Runtime<B>> => {
        let backend: B | undefined;
        try {
          backend = await options.createBackend();
        } catch (error) {
          return { backend: undefined, unavailable: `createBackend() threw: ${oneLine(error)}` };
        }
        const ready = backend;
        onCleanup(() => ready.close());
        try {
          const availability = await backend.available();
          return { backend, unavailable: availability.ok ? undefined : availability.reason };
        } catch (error) {
          return { backend, unavailable: `available() threw: ${oneLine(error)}` };
        }
      })
      .extend('sharedSandbox', { scope: 'file' }, async ({ runtime }, { onCleanup }) => {
        if (runtime.backend === undefined || runtime.unavailable !== undefined) return undefined;
        const sandbox = await runtime.backend.create({
          image: options.image,
          resources: options.limits ?? SMALL_LIMITS,
          network: 'none',
          labels: { ...options.labels },
        });
        // Runs before the backend is closed: fixtures are torn down in the reverse order of their set-up.
        onCleanup(() => sandbox.destroy());
        return sandbox;
      })
      .extend('backend', async ({ runtime, skip }): Promise<B> => {
        if (runtime.backend === undefined || runtime.unavailable !== undefined) {
          const reason = runtime.unavailable ?? 'no backend';
          if (options.requireRuntime) {
            throw new Error(`isolation runtime unavailable (requireRuntime is true): ${reason}`);
          }
          skip(reason);
        }
        return runtime.backend as B;
      })
      .extend('sandbox', async ({ backend, sharedSandbox }): Promise<Sandbox> => {
        if (sharedSandbox === undefined) throw new Error(`no sandbox on backend ${backend.name}`);
        return sharedSandbox;
      })
  );
}
