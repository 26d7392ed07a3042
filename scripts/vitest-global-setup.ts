import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
// Type-only: brings the ProvidedContext keys (seccompProfile, sandboxRootfs) into scope for provide().
import type {} from '../packages/isolation/src/testing/runtime-paths.ts';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * The host paths the isolation backends take as options, resolved once per run for the runtime projects and
 * read in test files with `runtimePaths()` (`@studio/isolation/testing`): packages never locate `infra/`
 * themselves. The environment wins, as it does for the API (apps/api/src/env.ts).
 */
export default function setup(project: TestProject): void {
  project.provide(
    'seccompProfile',
    process.env.STUDIO_SECCOMP_PROFILE || `${REPO_ROOT}infra/seccomp/studio.json`,
  );
  project.provide('sandboxRootfs', process.env.STUDIO_SANDBOX_ROOTFS || printRootfs());
}

/** What `build.sh --print-rootfs` names; it exits 1 (still printing the path) while the rootfs is not built yet. */
function printRootfs(): string {
  try {
    return execFileSync('bash', [`${REPO_ROOT}infra/image/build.sh`, '--print-rootfs'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 30_000,
    }).trim();
  } catch (error) {
    return String((error as { stdout?: unknown }).stdout ?? '').trim();
  }
}
