import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * For tests: the rootfs infra/image/build.sh built (scripts/studio.sh builds it before the tests), or
 * STUDIO_SANDBOX_ROOTFS. When it is not built yet, the path it would have: available() then names the fix.
 */
export function sandboxRootfs(): string {
  if (process.env.STUDIO_SANDBOX_ROOTFS) return process.env.STUDIO_SANDBOX_ROOTFS;
  const script = fileURLToPath(new URL('../../../infra/image/build.sh', import.meta.url));
  try {
    return execFileSync('bash', [script, '--print-rootfs'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch (error) {
    // Status 1 with the path on stdout: not built yet.
    return String((error as { stdout?: unknown }).stdout ?? '').trim();
  }
}
