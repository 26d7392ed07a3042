import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync, statfsSync } from 'node:fs';
import { networkInterfaces } from 'node:os';

/** Host-side observations, taken by the test process (which runs on the sandbox host) before and after attacks. */

/** Container runtime binaries a CVE-2019-5736-style attack would overwrite. */
const RUNTIME_BINARIES = [
  '/usr/sbin/runc',
  '/usr/bin/runc',
  '/usr/local/bin/runc',
  '/usr/bin/runsc',
  '/usr/local/bin/runsc',
  '/usr/bin/containerd-shim-runc-v2',
  '/usr/bin/docker-init',
  '/usr/bin/tini',
];

/** sha256 of every runtime binary present on the host. */
export function hashRuntimeBinaries(): Record<string, string> {
  const hashes: Record<string, string> = {};
  for (const path of RUNTIME_BINARIES) {
    if (!existsSync(path)) continue;
    try {
      hashes[path] = createHash('sha256').update(readFileSync(path)).digest('hex');
    } catch (error) {
      hashes[path] = `unreadable: ${String(error)}`;
    }
  }
  return hashes;
}

/** The test process's namespace links (`pid:[4026531836]` …), i.e. the host's when run on the host. */
export function hostNamespaces(kinds: readonly string[]): Record<string, string | null> {
  const result: Record<string, string | null> = {};
  for (const kind of kinds) {
    try {
      result[kind] = readlinkSync(`/proc/self/ns/${kind}`);
    } catch {
      result[kind] = null;
    }
  }
  return result;
}

/** Reads a host file, or null. */
export function readHostFile(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** Non-loopback IPv4 addresses of the host (docker0's gateway among them): a sandbox must reach none. */
export function hostIPv4Addresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .filter((a) => a.family === 'IPv4' && !a.internal)
    .map((a) => a.address);
}

/** Bytes available to unprivileged users on the filesystem holding `path`. */
export function freeBytes(path: string): number {
  const s = statfsSync(path);
  return s.bavail * s.bsize;
}
