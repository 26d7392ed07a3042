import { inject } from 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The seccomp profile every backend applies: `STUDIO_SECCOMP_PROFILE`, else the repository's `infra/seccomp/studio.json`. */
    seccompProfile: string;
    /**
     * The gVisor root filesystem of `studio-sandbox:latest`: `STUDIO_SANDBOX_ROOTFS`, else the directory
     * `bash infra/image/build.sh --print-rootfs` names (which may not be built yet: `available()` then says so).
     */
    sandboxRootfs: string;
  }
}

/** Host paths the backends take as options, as the runtime projects' `globalSetup` resolved them once. */
export interface RuntimePaths {
  seccompProfile: string;
  sandboxRootfs: string;
}

/**
 * For tests of the runtime projects (`docker`, `gvisor`, `e2e`): the paths `scripts/vitest-global-setup.ts`
 * provides, so no test file locates `infra/` itself. Throws, naming the fix, when run without that setup.
 */
export function runtimePaths(): RuntimePaths {
  const seccompProfile = inject('seccompProfile');
  const sandboxRootfs = inject('sandboxRootfs');
  if (typeof seccompProfile !== 'string' || typeof sandboxRootfs !== 'string') {
    throw new Error(
      'runtime paths were not provided: run this test in a runtime project of the root vitest.config.ts ' +
        '(--project docker, gvisor or e2e), whose globalSetup scripts/vitest-global-setup.ts provides them',
    );
  }
  return { seccompProfile, sandboxRootfs };
}
