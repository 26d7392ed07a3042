import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, realpath, rename, rm, rmdir, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { IsolationError, isIsolationError, type SandboxInfo } from '@studio/isolation';
import { defaultHeadroomBytes, formatBytes, parseMountinfo, reserveVerdict } from './host-space.ts';

const run = promisify(execFile);

/** How a backend stores workspaces: a loop-mounted ext4 image with a hard quota, or a runtime volume without one. */
export type WorkspaceMode = 'loop' | 'volume';

/**
 * The `failure` a backend reports for a sandbox whose workspace is in {@link LoopWorkspaces.readOnlyIds}, with
 * state `failed` whatever its process says: the filesystem cannot be written again until the operator checks it
 * (fsck) on the host, so the session shows it and the API's reconcile logs it, instead of `running` with every
 * write refused (issue 17).
 */
export const WORKSPACE_READ_ONLY_FAILURE: NonNullable<SandboxInfo['failure']> = Object.freeze({
  code: 'INTERNAL',
  workspace: 'read-only',
  reason:
    'the workspace filesystem went read-only after a write error on the host (the operator can still read its files): destroy the session and create another; the operator checks the host disk and the API log',
});

/** Options for {@link LoopWorkspaces}. */
export interface LoopWorkspacesOptions {
  /**
   * Bytes of the data directory's filesystem that no workspace may take, so the host's own writes still fit
   * when every quota is full. Default: 5% of that filesystem, at most 1 GiB (`defaultHeadroomBytes`).
   */
  headroomBytes?: number;
  /**
   * Keep this many images made ahead (preallocated and formatted, not mounted) for creates of exactly this size
   * and inode count, refilled in the background: making one (fallocate, mkfs) is most of a create's own time.
   */
  pool?: WorkspacePoolOptions;
}

/** A pool of ready workspace images of one shape; see {@link LoopWorkspacesOptions.pool}. */
export interface WorkspacePoolOptions {
  /** Images kept ready; 0 turns the pool off. */
  size: number;
  sizeBytes: number;
  inodes: number;
}

// Pool images live in `<root>/.pool/`: `ready-<random>.img` once formatted, `making-<random>.img` before. A
// process that dies mid-make leaves a `making-` file, removed on the next start; `ready-` ones are reused. They
// are never mounted, so a crash leaves no loop device or mount behind them (issue 17).
const POOL_DIR = '.pool';

// Bytes promised to creates in flight, per filesystem (device number), across every LoopWorkspaces of this
// process: two concurrent creates must not both pass the free-space check for the same last gigabyte.
const inFlight = new Map<number, number>();

/**
 * Workspaces as loop-mounted ext4 images: the only way to get a real byte and inode quota on an ext4
 * host, where overlay2 cannot quota bind mounts. Mounted nosuid,nodev so nothing planted in it gains
 * privilege. Needs root (mount), like the Docker socket itself.
 *
 * Each image is preallocated (`fallocate`) to its full quota, and a create that would not leave the headroom
 * free is refused with `HOST_DISK_FULL` (issue 17). A sparse image let one session fill the host's disk: every
 * other image's next block write then failed, which aborted its ext4 journal and turned it read-only. A
 * preallocated image never asks the host for a block again, so no session can take another's space.
 */
export class LoopWorkspaces {
  readonly #root: string;
  readonly #headroomBytes: number | undefined;
  readonly #pool: WorkspacePoolOptions | undefined;
  // Names of ready pool images, once the pool folder was read.
  #ready: string[] = [];
  #loading: Promise<void> | undefined;
  #refilling: Promise<void> | undefined;
  #refillFailedAt = 0;
  #closed = false;
  /** Copies ({@link copyOut}) in progress: {@link thawAll} waits for none and skips while any runs. */
  #copying = 0;

  constructor(dataDir: string, options: LoopWorkspacesOptions = {}) {
    this.#root = join(dataDir, 'workspaces');
    this.#headroomBytes = options.headroomBytes;
    this.#pool = options.pool && options.pool.size > 0 ? { ...options.pool } : undefined;
  }

  /** Ready pool images now (0 without a pool). */
  get pooled(): number {
    return this.#ready.length;
  }

  /** Reads the pool folder once: removes what a dead process left half made, adopts the ready images. */
  #load(): Promise<void> {
    this.#loading ??= (async () => {
      const dir = join(this.#root, POOL_DIR);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const names = await readdir(dir);
      for (const name of names) if (name.startsWith('making-')) await rm(join(dir, name), { force: true });
      this.#ready.push(...names.filter((n) => n.startsWith('ready-') && n.endsWith('.img')));
    })().catch((error: unknown) => {
      this.#loading = undefined;
      throw error;
    });
    return this.#loading;
  }

  /**
   * Starts filling the pool in the background, if there is one and it is not full; returns the fill (which never
   * rejects: a failure only means creates make their image themselves, and the next call tries again after 30 s).
   */
  fillPool(): Promise<void> {
    if (!this.#pool || this.#closed) return Promise.resolve();
    if (Date.now() - this.#refillFailedAt < 30_000) return this.#refilling ?? Promise.resolve();
    this.#refilling ??= this.#refill().finally(() => {
      this.#refilling = undefined;
    });
    return this.#refilling;
  }

  async #refill(): Promise<void> {
    const pool = this.#pool as WorkspacePoolOptions;
    const dir = join(this.#root, POOL_DIR);
    try {
      await this.#load();
      while (!this.#closed && this.#ready.length < pool.size) {
        const tag = randomBytes(8).toString('hex');
        const making = join(dir, `making-${tag}.img`);
        await this.#make(making, pool.sizeBytes, pool.inodes);
        await rename(making, join(dir, `ready-${tag}.img`));
        this.#ready.push(`ready-${tag}.img`);
      }
    } catch {
      this.#refillFailedAt = Date.now();
    }
  }

  /** Takes a ready pool image for `id`, if the pool has one of this shape; false otherwise. */
  async #claim(id: string, sizeBytes: number, inodes: number): Promise<boolean> {
    const pool = this.#pool;
    if (!pool || pool.sizeBytes !== sizeBytes || pool.inodes !== inodes) return false;
    await this.#load().catch(() => undefined);
    const name = this.#ready.shift();
    if (name === undefined) return false;
    try {
      await rename(join(this.#root, POOL_DIR, name), this.imagePath(id));
      return true;
    } catch {
      return false;
    } finally {
      void this.fillPool();
    }
  }

  /** Stops refilling the pool (its ready images stay for the next start). */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#refilling;
  }

  imagePath(id: string): string {
    return join(this.#root, `${id}.img`);
  }

  mountPath(id: string): string {
    return join(this.#root, id);
  }

  async create(id: string, sizeBytes: number, inodes: number): Promise<string> {
    await mkdir(this.#root, { recursive: true, mode: 0o700 });
    // An image just made, or a pool one (made whole, never mounted), has no holes to fill.
    if (!(await this.#claim(id, sizeBytes, inodes))) await this.#make(this.imagePath(id), sizeBytes, inodes);
    return this.#mount(id, false);
  }

  /** Makes a formatted image at `image`, reserved against the host's free space first. */
  async #make(image: string, sizeBytes: number, inodes: number): Promise<void> {
    const release = await this.#reserve(sizeBytes);
    try {
      await this.#preallocate(image, sizeBytes);
      // -m 0: no root-reserved blocks, the quota is all the user's; root_owner so uid 1000 owns the root;
      // nodiscard: on a regular file mkfs "discards" by punching holes, which would make the image sparse again;
      // lazy_*_init=0: initialise inode tables and journal now (a metadata-only ZERO_RANGE on a preallocated
      // file, no slower), else the kernel's ext4lazyinit zeroes them after mount through the loop device, which
      // punches holes in the image (seen: 50 of 64 MiB given back to the host within seconds).
      await run('mkfs.ext4', [
        '-q',
        '-F',
        '-m',
        '0',
        '-N',
        String(inodes),
        '-E',
        'root_owner=1000:1000,nodiscard,lazy_itable_init=0,lazy_journal_init=0',
        image,
      ]);
    } catch (error) {
      await rm(image, { force: true });
      if (isIsolationError(error)) throw error;
      throw new IsolationError('INTERNAL', `could not create the workspace image: ${errorText(error)}`, {
        cause: error,
      });
    } finally {
      release();
    }
  }

  /**
   * Checks that `sizeBytes` fits in the data directory's free space minus the headroom and what creates in
   * flight were promised, and promises it until the returned release is called.
   */
  async #reserve(sizeBytes: number): Promise<() => void> {
    const [fs, dir] = await Promise.all([statfs(this.#root), stat(this.#root)]);
    const availableBytes = fs.bavail * fs.bsize;
    const headroomBytes = this.#headroomBytes ?? defaultHeadroomBytes(fs.blocks * fs.bsize);
    const pendingBytes = inFlight.get(dir.dev) ?? 0;
    const verdict = reserveVerdict({ availableBytes, pendingBytes, sizeBytes, headroomBytes });
    if (!verdict.ok) {
      throw hostDiskFull(
        `${formatBytes(availableBytes)} free, ${formatBytes(headroomBytes)} of it kept as headroom, ` +
          `${formatBytes(pendingBytes)} promised to creates in flight; ${formatBytes(verdict.missingBytes)} missing`,
        sizeBytes,
        { availableBytes, headroomBytes, pendingBytes, missingBytes: verdict.missingBytes },
      );
    }
    inFlight.set(dir.dev, pendingBytes + sizeBytes);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (inFlight.get(dir.dev) ?? sizeBytes) - sizeBytes;
      if (left > 0) inFlight.set(dir.dev, left);
      else inFlight.delete(dir.dev);
    };
  }

  async #preallocate(image: string, sizeBytes: number): Promise<void> {
    try {
      await run('fallocate', ['-l', String(sizeBytes), image]);
    } catch (error) {
      const text = errorText(error);
      // Someone else wrote to the host's disk between the check and here.
      if (/no space left/i.test(text))
        throw hostDiskFull('the disk filled during the create', sizeBytes, {}, error);
      if (/not supported/i.test(text)) {
        throw new IsolationError(
          'UNSUPPORTED',
          "the data directory's filesystem cannot preallocate workspace images: put the data directory on ext4, xfs or tmpfs",
          { cause: error },
        );
      }
      throw new IsolationError('INTERNAL', `could not preallocate the workspace image: ${text}`, {
        cause: error,
      });
    }
  }

  /**
   * Copies workspace `id`'s image to `target` (a file that must not exist), for a snapshot. The caller keeps the
   * sandbox's own writers still meanwhile (paused); the mounted filesystem is frozen for the copy (`fsfreeze`: its
   * journal checkpointed, so the image on disk is a clean filesystem) and thawed after, whatever happened. `e2image
   * -ra` copies only the blocks the filesystem uses, sparsely: a preallocated 2 GiB image holding little is copied
   * in tens of milliseconds instead of read whole (`cp` took 4.4 s here). Returns the copy's size on disk in bytes.
   */
  async copyOut(id: string, target: string): Promise<number> {
    const mounted = this.mountPath(id);
    const frozen = await this.#isMounted(mounted);
    this.#copying++;
    try {
      if (frozen) await run('fsfreeze', ['--freeze', mounted]);
      try {
        // -f: the filesystem is mounted, but frozen (clean and still) for the copy, which is what -f asks for.
        await run('e2image', ['-raf', this.imagePath(id), target]);
      } catch (error) {
        await rm(target, { force: true });
        throw copyFailed(error);
      } finally {
        if (frozen) await run('fsfreeze', ['--unfreeze', mounted]).catch(() => undefined);
      }
    } finally {
      this.#copying--;
    }
    const s = await stat(target);
    return s.blocks * 512;
  }

  /**
   * Thaws every mounted workspace a copy was freezing when its process died (a frozen filesystem blocks its
   * sandbox's writes until thawed). Safe to call at any time no copy runs: thawing a filesystem that is not frozen
   * is refused, and ignored.
   */
  async thawAll(): Promise<void> {
    // A copy of this process is freezing one on purpose: never thaw under it.
    if (this.#copying > 0) return;
    for (const name of await readdir(this.#root).catch(() => [] as string[])) {
      if (name.endsWith('.img') || name.startsWith('.')) continue;
      const target = join(this.#root, name);
      if (await this.#isMounted(target)) await run('fsfreeze', ['--unfreeze', target]).catch(() => undefined);
    }
  }

  /**
   * Makes workspace `id` from an image {@link copyOut} wrote, and mounts it: the image is copied, then its holes
   * filled (`fallocate`, metadata only) so it is preallocated like every other workspace, with its quota
   * reserved against the host's free space first (`HOST_DISK_FULL` when it does not fit).
   */
  async createFrom(id: string, source: string): Promise<string> {
    await mkdir(this.#root, { recursive: true, mode: 0o700 });
    const size = (await stat(source)).size;
    const image = this.imagePath(id);
    const release = await this.#reserve(size);
    try {
      await run('cp', ['--sparse=always', '--no-preserve=all', source, image]);
      await this.#preallocate(image, size);
    } catch (error) {
      await rm(image, { force: true });
      if (isIsolationError(error)) throw error;
      throw copyFailed(error);
    } finally {
      release();
    }
    return this.#mount(id, false);
  }

  /** The workspace's image size (its byte quota) and inode count, for a snapshot's record. */
  async shape(id: string): Promise<{ diskBytes: number; inodes: number }> {
    const mounted = this.mountPath(id);
    if (await this.#isMounted(mounted)) {
      const s = await statfs(mounted);
      return { diskBytes: (await stat(this.imagePath(id))).size, inodes: s.files };
    }
    return { diskBytes: (await stat(this.imagePath(id))).size, inodes: 0 };
  }

  /**
   * Creates the workspace's (empty) mount point and returns it, so a runtime can be given the bind source while
   * {@link create} makes and mounts the image.
   */
  async prepareMountPoint(id: string): Promise<string> {
    await mkdir(this.#root, { recursive: true, mode: 0o700 });
    const target = this.mountPath(id);
    await mkdir(target, { recursive: true, mode: 0o755 });
    return target;
  }

  /** Mounts the workspace image if it is not mounted (again after a host reboot). */
  mount(id: string): Promise<string> {
    return this.#mount(id, true);
  }

  async #mount(id: string, fill: boolean): Promise<string> {
    const target = this.mountPath(id);
    await mkdir(target, { recursive: true, mode: 0o755 });
    if (await this.#isMounted(target)) return target;
    // Fill any holes again before mounting: an image made sparse by an older release or punched by a host
    // `fstrim` would otherwise ask the host for blocks on write. Best effort: a host too full to fill them must
    // not lock a user out of their files (its writes then fail, and the workspace shows up as read-only).
    const size = fill
      ? await stat(this.imagePath(id)).then(
          (s) => s.size,
          () => 0,
        )
      : 0;
    if (size > 0) await run('fallocate', ['-l', String(size), this.imagePath(id)]).catch(() => undefined);
    try {
      await run('mount', ['-o', 'loop,nosuid,nodev,noatime', this.imagePath(id), target]);
    } catch (error) {
      throw new IsolationError('INTERNAL', `could not mount the workspace image: ${errorText(error)}`, {
        cause: error,
      });
    }
    // mkfs leaves a root-owned lost+found the sandbox user could neither use nor remove.
    await rmdir(join(target, 'lost+found')).catch(() => undefined);
    return target;
  }

  /**
   * Fills the holes of every workspace image again, and returns the ids it had to fill. A discard through a
   * loop device (a host `fstrim -A`, which systemd's fstrim.timer runs weekly, or a `discard` mount) punches
   * holes in its image, making it sparse again, so it would once more ask the host for blocks on write.
   * Best effort: an image the host has no room to fill stays sparse (and shows up in `readOnlyIds` if it fails).
   */
  async fillHoles(): Promise<string[]> {
    const names = await readdir(this.#root).catch(() => [] as string[]);
    const filled: string[] = [];
    for (const name of names) {
      if (!name.endsWith('.img')) continue;
      const image = join(this.#root, name);
      const s = await stat(image).catch(() => undefined);
      if (!s || s.blocks * 512 >= s.size) continue;
      const ok = await run('fallocate', ['-l', String(s.size), image]).then(
        () => true,
        () => false,
      );
      if (ok) filled.push(name.slice(0, -'.img'.length));
    }
    return filled;
  }

  async exists(id: string): Promise<boolean> {
    return stat(this.imagePath(id)).then(
      () => true,
      () => false,
    );
  }

  async usage(id: string): Promise<{ used: number; limit: number } | null> {
    const target = this.mountPath(id);
    if (!(await this.#isMounted(target))) return null;
    const s = await statfs(target);
    return { used: (s.blocks - s.bfree) * s.bsize, limit: s.blocks * s.bsize };
  }

  /**
   * Ids of the mounted workspaces whose filesystem is read-only: an ext4 turns read-only when its journal
   * aborts on a write error (the host refused a block, a disk failed). Its files can still be read.
   */
  async readOnlyIds(): Promise<Set<string>> {
    const [text, root] = await Promise.all([
      readFile('/proc/self/mountinfo', 'utf8').catch(() => ''),
      realpath(this.#root).catch(() => this.#root),
    ]);
    const ids = new Set<string>();
    for (const m of parseMountinfo(text)) {
      if (!m.readOnly || !m.mountPoint.startsWith(`${root}/`)) continue;
      const id = m.mountPoint.slice(root.length + 1);
      if (!id.includes('/')) ids.add(id);
    }
    return ids;
  }

  async destroy(id: string): Promise<void> {
    const target = this.mountPath(id);
    if (await this.#isMounted(target)) {
      // A lazy unmount never fails on a busy mount; the loop device is freed when the last user goes.
      await run('umount', ['-l', target]).catch(() => undefined);
    }
    await rmdir(target).catch(() => undefined);
    await rm(this.imagePath(id), { force: true });
  }

  async #isMounted(target: string): Promise<boolean> {
    try {
      const [self, parent] = await Promise.all([stat(target), stat(join(target, '..'))]);
      return self.dev !== parent.dev;
    } catch {
      return false;
    }
  }
}

function hostDiskFull(
  why: string,
  sizeBytes: number,
  details: Record<string, unknown>,
  cause?: unknown,
): IsolationError {
  // No host path in the message: the API shows it to the user. The operator's fix is named.
  return new IsolationError(
    'HOST_DISK_FULL',
    `the host has no room for a ${formatBytes(sizeBytes)} workspace (${why}): the operator must free space on ` +
      "the data directory's disk or lower the workspace quota (STUDIO_POLICY sandbox.diskBytes); or ask for a smaller disk",
    { cause, details: { sizeBytes, ...details } },
  );
}

function copyFailed(error: unknown): IsolationError {
  const text = errorText(error);
  if (/no space left/i.test(text)) return hostDiskFull('the disk filled during the copy', 0, {}, error);
  return new IsolationError('INTERNAL', `could not copy the workspace image: ${text}`, { cause: error });
}

function errorText(error: unknown): string {
  const e = error as { stderr?: string; message?: string };
  return (e.stderr || e.message || String(error)).trim().slice(0, 500);
}
