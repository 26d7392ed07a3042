const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/**
 * The default headroom kept free on the data directory's filesystem: 5% of it, at most 1 GiB. No workspace can
 * take it, so the host's own writes (the API's data, Docker, logs) still fit when every quota is in use.
 */
export function defaultHeadroomBytes(totalBytes: number): number {
  return Math.min(GiB, Math.ceil(totalBytes * 0.05));
}

/** What {@link reserveVerdict} decides from. All figures in bytes. */
export interface ReserveInput {
  /** Free space on the data directory's filesystem for an unprivileged writer (statfs `bavail`). */
  availableBytes: number;
  /** Space promised to creates in flight on the same filesystem, not yet allocated. */
  pendingBytes: number;
  /** The new workspace's quota (its image is preallocated to exactly this). */
  sizeBytes: number;
  /** Space no workspace may take. */
  headroomBytes: number;
}

/**
 * Whether a workspace of `sizeBytes` fits beside what is free, in flight and kept as headroom. `missingBytes`
 * is how much the operator would have to free (or the quota shrink) for it to fit.
 */
export function reserveVerdict(input: ReserveInput): { ok: true } | { ok: false; missingBytes: number } {
  const left = input.availableBytes - input.pendingBytes - input.headroomBytes - input.sizeBytes;
  return left >= 0 ? { ok: true } : { ok: false, missingBytes: -left };
}

/** `1.5 GiB`, `300 MiB`: sizes in refusals an operator reads. */
export function formatBytes(bytes: number): string {
  if (bytes >= GiB) return `${Math.round((bytes / GiB) * 10) / 10} GiB`;
  return `${Math.ceil(bytes / MiB)} MiB`;
}

/** One mount of /proc/self/mountinfo: where it is and whether it (or its superblock) is read-only. */
export interface MountEntry {
  mountPoint: string;
  readOnly: boolean;
}

// Superblock options of a filesystem that turned read-only by itself: `ro` on older kernels; Linux 6.x ext4
// whose journal aborted shows `rw,emergency_ro` (seen on 6.18 reproducing issue 17), and `shutdown` after a
// forced shutdown.
const FAILED_READ_ONLY = ['ro', 'emergency_ro', 'shutdown'];

/**
 * Parses /proc/self/mountinfo (proc(5)). A mount is read-only when its per-mount options say `ro` or its
 * superblock options say it went read-only: an ext4 whose journal aborted keeps `rw` per mount.
 */
export function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    const mountPoint = fields[4];
    if (dash < 6 || mountPoint === undefined) continue;
    const mountOptions = (fields[5] ?? '').split(',');
    const superOptions = (fields[dash + 3] ?? '').split(',');
    entries.push({
      mountPoint: unescapeOctal(mountPoint),
      readOnly: mountOptions.includes('ro') || superOptions.some((o) => FAILED_READ_ONLY.includes(o)),
    });
  }
  return entries;
}

// mountinfo writes space, tab, newline and backslash in paths as \ooo.
function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}
