import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { IsolationError } from '@studio/isolation';
import { execa } from 'execa';

/** Options of {@link SandboxRoot}. */
export interface SandboxRootOptions {
  /**
   * Where the overlay's `upper` and `work` directories go. Default the bundle directory. A template build
   * (issue 19) puts them on its loop-mounted image, so what the build writes is bounded by the image's size.
   */
  layersDir?: string;
  /** Extra mount options of the overlay (`nosuid`, `nodev`: a build's root can hold setuid files). */
  mountOptions?: readonly string[];
}

/**
 * A sandbox's private root: an overlay over the image's rootfs, with an upper
 * directory of its own. runsc's gofer creates missing mount points in the root it is given, as root, on
 * the host; with the overlay they land in this sandbox's upper directory instead of the shared image.
 * A session sees the root read-only; a template build writes to it.
 */
export class SandboxRoot {
  readonly dir: string;
  readonly #layers: string;
  readonly #options: readonly string[];

  constructor(bundleDir: string, options: SandboxRootOptions = {}) {
    this.dir = bundleDir;
    this.#layers = options.layersDir ?? bundleDir;
    this.#options = options.mountOptions ?? [];
  }

  /** The overlay's upper directory: everything written to the root, as overlayfs records it. */
  get upperDir(): string {
    return join(this.#layers, 'upper');
  }

  get mountPoint(): string {
    return join(this.dir, 'rootfs');
  }

  async mount(rootfs: string): Promise<string> {
    const target = this.mountPoint;
    if (await isMounted(target)) return target;
    for (const p of [rootfs, this.dir, this.#layers]) {
      if (/[,:\\\s]/.test(p))
        throw new IsolationError('INVALID_INPUT', `path ${p} cannot be used in an overlay mount`);
    }
    const upper = this.upperDir;
    const work = join(this.#layers, 'work');
    await Promise.all([
      mkdir(target, { recursive: true }),
      mkdir(upper, { recursive: true }),
      mkdir(work, { recursive: true }),
    ]);
    try {
      await execa(
        'mount',
        [
          '-t',
          'overlay',
          'overlay',
          '-o',
          [`lowerdir=${rootfs}`, `upperdir=${upper}`, `workdir=${work}`, ...this.#options].join(','),
          target,
        ],
        {
          stdin: 'ignore',
          timeout: 30_000,
        },
      );
    } catch (error) {
      throw new IsolationError('INTERNAL', `could not mount the sandbox root: ${errorText(error)}`, {
        cause: error,
      });
    }
    return target;
  }

  /** Unmounts the root; lazily when busy. Throws only when it stays mounted. */
  async unmount(): Promise<void> {
    await unmountAll(this.dir);
  }
}

/** Unmounts everything mounted at or below `dir` (deepest first), lazily when busy. */
export async function unmountAll(dir: string): Promise<void> {
  for (const point of await mountsUnder(dir)) {
    await execa('umount', [point], { stdin: 'ignore', timeout: 30_000 }).catch(() =>
      execa('umount', ['-l', point], { stdin: 'ignore', timeout: 30_000 }).catch(() => undefined),
    );
  }
  const left = await mountsUnder(dir);
  if (left.length > 0) throw new IsolationError('INTERNAL', `could not unmount ${left.join(', ')}`);
}

/** Mount points at or below `dir`, deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return (await mountTable())
    .map((m) => m.point)
    .filter((p) => p === dir || p.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

/** The host's mount table (mount point and options), with /proc's octal escapes decoded. */
export async function mountTable(): Promise<Array<{ point: string; options: string }>> {
  const text = await readFile('/proc/self/mounts', 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const fields = line.split(' ');
      return { point: unescapeMount(fields[1] ?? ''), options: unescapeMount(fields[3] ?? '') };
    });
}

async function isMounted(path: string): Promise<boolean> {
  return (await mountTable()).some((m) => m.point === path);
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

function errorText(error: unknown): string {
  const e = error as { stderr?: string; message?: string };
  return (e.stderr || e.message || String(error)).trim().slice(0, 500);
}
