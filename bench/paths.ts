import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// bench/ is an app like the API: it reads its environment here, once, and passes the paths to the backends
// (packages never locate infra/ themselves). The same variables and defaults as apps/api/src/env.ts.
const root = fileURLToPath(new URL('..', import.meta.url));

/** The seccomp profile both backends apply. */
export const SECCOMP_PROFILE: string =
  process.env.STUDIO_SECCOMP_PROFILE || `${root}infra/seccomp/studio.json`;

/** The gVisor rootfs of the sandbox image: `STUDIO_SANDBOX_ROOTFS`, else what build.sh names (throws when not built). */
export function sandboxRootfs(): string {
  if (process.env.STUDIO_SANDBOX_ROOTFS) return process.env.STUDIO_SANDBOX_ROOTFS;
  return execFileSync('bash', [`${root}infra/image/build.sh`, '--print-rootfs'], { encoding: 'utf8' }).trim();
}
