import { defineConfig } from 'vitest/config';

// Named projects: `unit` is pure and fast; `docker` and `gvisor` need a real runtime (see scripts/studio.sh);
// `e2e` drives a browser. A file's suffix picks its project.
const runtimeSuffixes = ['**/*.docker.test.ts', '**/*.gvisor.test.ts', '**/*.e2e.test.ts'];
const ignored = ['**/node_modules/**', '**/dist/**', '**/.next/**'];
// The runtime projects get the host paths the backends need (seccomp profile, gVisor rootfs) from one setup.
const globalSetup = ['scripts/vitest-global-setup.ts'];

export default defineConfig({
  test: {
    projects: [
      {
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
