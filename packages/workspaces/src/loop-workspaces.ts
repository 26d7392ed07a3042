import { execFile } from 'node:child_process';
import { mkdir, rm, rmdir, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { IsolationError } from '@studio/isolation';

const run = promisify(execFile);

/** How a backend stores workspaces: a loop-mounted ext4 image with a hard quota, or a runtime volume without one. */
export type WorkspaceMode = 'loop' | 'volume';

/**
 * Workspaces as loop-mounted ext4 images: the only way to get a real byte and inode quota on an ext4
 * host, where overlay2 cannot quota bind mounts. The image is sparse, so the host pays only for what
 * is written, and never more than the quota. Mounted nosuid,nodev so nothing planted in it gains
 * privilege. Needs root (mount), like the Docker socket itself.
 */
export class LoopWorkspaces {
  readonly #root: string;

  constructor(dataDir: string) {
    this.#root = join(dataDir, 'workspaces');
  }

  imagePath(id: string): string {
    return join(this.#root, `${id}.img`);
  }

  mountPath(id: string): string {
    return join(this.#root, id);
  }

  async create(id: string, sizeBytes: number, inodes: number): Promise<string> {
    await mkdir(this.#root, { recursive: true, mode: 0o700 });
    const image = this.imagePath(id);
    try {
      await run('truncate', ['-s', String(sizeBytes), image]);
      // -m 0: no root-reserved blocks, the quota is all the user's; root_owner so uid 1000 owns the root.
      await run('mkfs.ext4', [
        '-q',
        '-F',
        '-m',
        '0',
        '-N',
        String(inodes),
        '-E',
        'root_owner=1000:1000',
        image,
      ]);
    } catch (error) {
      await rm(image, { force: true });
      throw new IsolationError('INTERNAL', `could not create the workspace image: ${errorText(error)}`, {
        cause: error,
      });
    }
    return this.mount(id);
  }

  /** Mounts the workspace image if it is not mounted (again after a host reboot). */
  async mount(id: string): Promise<string> {
    const target = this.mountPath(id);
    await mkdir(target, { recursive: true, mode: 0o755 });
    if (await this.#isMounted(target)) return target;
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

function errorText(error: unknown): string {
  const e = error as { stderr?: string; message?: string };
  return (e.stderr || e.message || String(error)).trim().slice(0, 500);
}
