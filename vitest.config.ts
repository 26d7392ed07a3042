import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Named projects: `unit` is pure and fast; `docker` and `gvisor` need a real runtime (see scripts/studio.sh);
// `e2e` drives a browser. A file's suffix picks its project.
const runtimeSuffixes = ['**/*.docker.test.ts', '**/*.gvisor.test.ts', '**/*.e2e.test.ts'];
const ignored = ['**/node_modules/**', '**/dist/**', '**/.next/**'];
// The runtime projects get the host paths the backends need (seccomp profile, gVisor rootfs) from one setup.
const globalSetup = ['scripts/vitest-global-setup.ts'];
// @studio/client's package exports point at its build (dist/, for the published package); tests use its sources,
// as tsconfig.base.json's `paths` does for tsc, tsx and Next.
const resolve = {
  alias: { '@studio/client': fileURLToPath(new URL('./packages/client/src/index.ts', import.meta.url)) },
};

export default defineConfig({
  test: {
    projects: [
      {
        resolve,
        test: {
          name: 'unit',
          include: ['{packages,apps}/*/src/**/*.test.ts', 'infra/test/**/*.test.ts'],
          exclude: [...ignored, ...runtimeSuffixes],
          // Pure, but some hash passwords (argon2) or open PGlite: generous while the runtime projects load
          // both cores (a timeout here has only ever meant a busy machine). Hooks too: they open PGlite.
          testTimeout: 30_000,
          hookTimeout: 60_000,
        },
      },
      {
        resolve,
        test: {
          name: 'docker',
          globalSetup,
          include: ['{packages,apps}/*/src/**/*.docker.test.ts', 'infra/test/**/*.docker.test.ts'],
          exclude: ignored,
          testTimeout: 120_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
      {
        resolve,
        test: {
          name: 'gvisor',
          globalSetup,
          include: ['{packages,apps}/*/src/**/*.gvisor.test.ts'],
          exclude: ignored,
          testTimeout: 120_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
      {
        resolve,
        test: {
          name: 'e2e',
          globalSetup,
          include: ['apps/*/{src,e2e}/**/*.e2e.test.ts'],
          exclude: ignored,
          testTimeout: 180_000,
          hookTimeout: 600_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
