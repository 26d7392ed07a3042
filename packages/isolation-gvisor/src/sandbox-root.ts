import { createHash, randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IsolationError } from '@studio/isolation';
import { execa } from 'execa';
import { GUEST_LIB_DIR, GUEST_STATX_SHIM } from './oci-spec.ts';
import { compileSeccompProfile, type SeccompProfile } from './seccomp-bpf.ts';

const GUEST_SOURCES = fileURLToPath(new URL('../guest/', import.meta.url));

/** Options of {@link GuestLayer}. */
export interface GuestLayerOptions {
  /** Directory that holds built layers (`<dataDir>/guest`). */
  dir: string;
  /** Docker-format seccomp profile (JSON file). */
  seccompProfilePath: string;
  /** C compiler for the statx shim. */
  compiler: string;
}

/**
 * The read-only layer every sandbox root gets on top of its image: the seccomp wrapper, the compiled
 * filter, the statx shim and the /etc/ld.so.preload that loads it. Built once per content hash under
 * `<dataDir>/guest/<hash>/layer`, never written into the shared image.
 */
export class GuestLayer {
  readonly #o: GuestLayerOptions;
  #built: Promise<string> | undefined;

  constructor(options: GuestLayerOptions) {
    this.#o = options;
  }

  /** The layer's directory, built if needed. */
  path(): Promise<string> {
    this.#built ??= this.#build();
    this.#built.catch(() => {
      this.#built = undefined;
    });
    return this.#built;
  }

  /** Hashes of built layers other than the current one (for pruning). */
  async others(): Promise<string[]> {
    const current = await this.path().catch(() => undefined);
    const entries = await readdir(this.#o.dir).catch(() => [] as string[]);
    return entries
      .filter((e) => /^[0-9a-f]{16}$/.test(e))
      .map((e) => join(this.#o.dir, e))
      .filter((d) => `${d}/layer` !== current);
  }

  async #build(): Promise<string> {
    const profileText = await readFile(this.#o.seccompProfilePath, 'utf8').catch((error: unknown) => {
      throw new IsolationError(
        'UNAVAILABLE',
        `seccomp profile not found at ${this.#o.seccompProfilePath}: pass seccompProfile (the API's STUDIO_SECCOMP_PROFILE)`,
        { cause: error },
      );
    });
    const filter = compileSeccompProfile(JSON.parse(profileText) as SeccompProfile);
    const shimSource = await readFile(join(GUEST_SOURCES, 'statx-compat.c'));
    const wrapper = await readFile(join(GUEST_SOURCES, 'seccomp-exec.py'));
    const hash = createHash('sha256')
      .update(filter)
      .update(shimSource)
      .update(wrapper)
      .digest('hex')
      .slice(0, 16);
    const root = join(this.#o.dir, hash);
    const layer = join(root, 'layer');
    if (await exists(join(root, '.complete'))) return layer;

    await mkdir(this.#o.dir, { recursive: true, mode: 0o700 });
    const tmp = join(this.#o.dir, `.tmp-${hash}-${randomBytes(4).toString('hex')}`);
    try {
      const lib = join(tmp, 'layer', GUEST_LIB_DIR);
      await mkdir(lib, { recursive: true, mode: 0o755 });
      await mkdir(join(tmp, 'layer', 'etc'), { mode: 0o755 });
      for (const d of ['layer', 'layer/usr', 'layer/usr/local', 'layer/usr/local/lib'])
        await chmod(join(tmp, d), 0o755);
      await writeFile(join(lib, 'seccomp.bpf'), filter, { mode: 0o644 });
      await copyFile(join(GUEST_SOURCES, 'seccomp-exec.py'), join(lib, 'seccomp-exec.py'));
      await chmod(join(lib, 'seccomp-exec.py'), 0o644);
      await this.#compileShim(join(GUEST_SOURCES, 'statx-compat.c'), join(lib, 'statx-compat.so'));
      await writeFile(join(tmp, 'layer', 'etc', 'ld.so.preload'), `${GUEST_STATX_SHIM}\n`, { mode: 0o644 });
      await writeFile(join(tmp, '.complete'), `${hash}\n`);
      await rename(tmp, root).catch(async (error: unknown) => {
        // Another process built the same layer first: theirs is identical.
        if (await exists(join(root, '.complete'))) return;
        throw error;
      });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    return layer;
  }

  async #compileShim(source: string, out: string): Promise<void> {
    try {
      await execa(this.#o.compiler, ['-shared', '-fPIC', '-O2', '-Wall', '-o', out, source], {
        stdin: 'ignore',
        timeout: 60_000,
      });
      await chmod(out, 0o755);
    } catch (error) {
      const e = error as { code?: string; stderr?: string };
      const why =
        e.code === 'ENOENT' ? `${this.#o.compiler} not found` : (e.stderr ?? String(error)).slice(0, 300);
      throw new IsolationError(
        'UNAVAILABLE',
        `cannot build the statx shim gVisor sandboxes need (${why}): apt-get install gcc libc6-dev`,
        { cause: error },
      );
    }
  }
}

/**
 * A sandbox's private root: an overlay of the guest layer over the image's rootfs, with an upper
 * directory of its own. runsc's gofer creates missing mount points in the root it is given, as root, on
 * the host; with the overlay they land in this sandbox's upper directory instead of the shared image.
 * The sandbox sees the root read-only.
 */
export class SandboxRoot {
  readonly dir: string;

  constructor(bundleDir: string) {
    this.dir = bundleDir;
  }

  get mountPoint(): string {
    return join(this.dir, 'rootfs');
  }

  async mount(rootfs: string, layer: string): Promise<string> {
    const target = this.mountPoint;
    if (await isMounted(target)) return target;
    for (const p of [rootfs, layer, this.dir]) {
      if (/[,:\\\s]/.test(p))
        throw new IsolationError('INVALID_INPUT', `path ${p} cannot be used in an overlay mount`);
    }
    const upper = join(this.dir, 'upper');
    const work = join(this.dir, 'work');
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
          `lowerdir=${layer}:${rootfs},upperdir=${upper},workdir=${work}`,
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

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function errorText(error: unknown): string {
  const e = error as { stderr?: string; message?: string };
  return (e.stderr || e.message || String(error)).trim().slice(0, 500);
}
