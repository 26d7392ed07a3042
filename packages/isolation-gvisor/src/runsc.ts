import { type ChildProcess, spawn } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { mapRunscError, RunscFailure } from './map-error.ts';

/** Options of {@link Runsc}. */
export interface RunscOptions {
  /** The runsc binary. */
  binary: string;
  /** runsc's state directory (`--root`): one per backend data directory. */
  root: string;
  /** gVisor platform: `systrap` (the fastest here, measured in the README), `ptrace`; KVM hangs in nested VMs. */
  platform: string;
  /** Limit of one runsc call (not of `exec` sessions). */
  timeoutMs: number;
}

/** The oldest runsc the backend runs on: systrap, directfs, OCI seccomp in the sandbox, the statx fix. */
export const MIN_RUNSC_VERSION = 20240729;

/**
 * The release date of a `runsc --version` output (`runsc version 0.0~20240729.0`, `release-20240729.0`),
 * as a number; undefined when the output names none.
 */
export function parseRunscVersion(output: string): number | undefined {
  const m = /^runsc version\s+(?:\d+\.\d+~|release-)?(\d{8})(?:\.\d+)?\b/m.exec(output);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/** Why `runsc --version`'s output is not good enough, or undefined when it is. */
export function runscTooOld(output: string): string | undefined {
  const line = output.split('\n', 1)[0]?.trim() ?? '';
  const version = parseRunscVersion(output);
  if (version !== undefined && version >= MIN_RUNSC_VERSION) return undefined;
  const name = line.replace(/^runsc version\s+/, '') || 'of an unknown version';
  return `runsc ${name} is too old: install runsc from bookworm-backports (bash infra/setup-runtimes.sh)`;
}

/** A container as `runsc state` / `runsc list --format=json` describe it. */
export interface RunscState {
  id: string;
  /** created | running | paused | stopped */
  status: string;
  pid: number;
  bundle: string;
  annotations?: Record<string, string>;
  created?: string;
}

/** What `runsc events --stats` prints in `data`. */
export interface RunscStats {
  cpu?: { usage?: { total?: number } };
  memory?: { usage?: { usage?: number; limit?: number; failcnt?: number } };
  pids?: { current?: number; limit?: number };
}

/**
 * The flags of every call (also what bench/raw.ts gives its raw `runsc run` baseline, so the two compare):
 * - `--network=none`: sandbox networking cannot run in this VM, and Studio offers none.
 * - `--oci-seccomp`: runsc installs the spec's `linux.seccomp` in the sandbox's first process.
 * - `--overlay2=none`: the root is read-only, so runsc's default root overlay (a file-backed upper layer)
 *   would only cost a mount; measured in the README.
 * - `--file-access-mounts=exclusive`: only the sandbox touches /workspace (the host's file operations go
 *   through the agent inside), so gVisor may cache it.
 */
export const RUNSC_FLAGS: readonly string[] = Object.freeze([
  '--network=none',
  '--oci-seccomp',
  '--overlay2=none',
  '--file-access-mounts=exclusive',
]);

/**
 * runsc driven through execa, with the flags every call needs. runsc keeps no global configuration:
 * `--root`, `--network=none` (sandbox networking cannot run in this VM, and Studio offers none) and the
 * platform are repeated on every call, or `start`/`exec` would try to set up a network.
 */
export class Runsc {
  readonly #o: RunscOptions;

  constructor(options: RunscOptions) {
    this.#o = options;
  }

  get root(): string {
    return this.#o.root;
  }

  get binary(): string {
    return this.#o.binary;
  }

  /** The global flags of every call. */
  globalArgs(): string[] {
    return [...RUNSC_FLAGS, '--root', this.#o.root, `--platform=${this.#o.platform}`];
  }

  /** Runs one runsc subcommand and returns its stdout; failures become IsolationErrors. */
  async run(args: readonly string[], what: string): Promise<string> {
    try {
      const r = await execa(this.#o.binary, [...this.globalArgs(), ...args], {
        stdin: 'ignore',
        timeout: this.#o.timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 16 * 1024 * 1024,
        stripFinalNewline: true,
      });
      return r.stdout;
    } catch (error) {
      throw mapRunscError(error, what);
    }
  }

  async version(): Promise<string> {
    try {
      const r = await execa(this.#o.binary, ['--version'], { stdin: 'ignore', timeout: this.#o.timeoutMs });
      return r.stdout.split('\n', 1)[0] ?? '';
    } catch (error) {
      throw mapRunscError(error, 'runsc --version');
    }
  }

  /** `runsc state`; undefined when runsc has no such container. */
  async state(id: string): Promise<RunscState | undefined> {
    try {
      return JSON.parse(await this.run(['state', id], `sandbox ${id}`)) as RunscState;
    } catch (error) {
      if ((error as { code?: string }).code === 'NOT_FOUND') return undefined;
      throw error;
    }
  }

  /** Every container under the root. */
  async list(): Promise<RunscState[]> {
    const out = await this.run(['list', '--format=json'], 'sandbox list');
    const parsed = JSON.parse(out || 'null') as RunscState[] | null;
    return parsed ?? [];
  }

  async stats(id: string): Promise<RunscStats> {
    const out = await this.run(['events', '--stats', id], `sandbox ${id}`);
    const parsed = JSON.parse(out) as { data?: RunscStats };
    return parsed.data ?? {};
  }

  /**
   * `runsc run --detach`: creates and starts the container, and returns once its first process runs (its
   * exit status says whether it did: no `runsc state` needed after it). `stdin` and `stdout` become the
   * first process's stdin and stdout (the agent's channel: FIFOs the backend opens again to reconnect);
   * stderr is a pipe read only until runsc itself exits (for its error message), then closed, so nothing
   * a sandbox prints can land in a host file.
   */
  async runDetached(
    bundle: string,
    id: string,
    stdin: number,
    stdout: number,
    options: { restoreFrom?: string } = {},
  ): Promise<void> {
    // `restore` is `run` from a checkpoint image: the same bundle, stdio and exit status, the memory restored.
    const args = [
      ...this.globalArgs(),
      ...(options.restoreFrom === undefined ? ['run'] : ['restore', '--image-path', options.restoreFrom]),
      '--detach',
      '--bundle',
      bundle,
      id,
    ];
    const exit = await new Promise<{ code: number | null; stderr: string; error?: unknown }>((resolve) => {
      let stderr = '';
      let child: ChildProcess;
      try {
        child = spawn(this.#o.binary, args, {
          stdio: [stdin, stdout, 'pipe'],
          timeout: this.#o.timeoutMs,
          killSignal: 'SIGKILL',
        });
      } catch (error) {
        resolve({ code: null, stderr, error });
        return;
      }
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => {
        if (stderr.length < 64 * 1024) stderr += chunk;
      });
      child.once('error', (error) => resolve({ code: null, stderr, error }));
      child.once('exit', (code) => {
        // The sandbox inherited this pipe as its stderr, so it never ends: read what runsc wrote before it
        // exited (a moment more on failure, for the message), then stop.
        setTimeout(
          () => {
            child.stderr?.destroy();
            resolve({ code, stderr });
          },
          code === 0 ? 0 : 50,
        );
      });
    });
    if (exit.error !== undefined) throw mapRunscError(exit.error, `sandbox ${id}`);
    if (exit.code !== 0) {
      throw mapRunscError(new RunscFailure(exit.stderr.trim(), exit.code), `sandbox ${id}`);
    }
  }

  /**
   * The host processes of this runsc root's sandboxes (`runsc-sandbox` and `runsc-gofer`, found by the
   * `--root=<dir>` runsc passes them), with their command lines: what a container runsc no longer knows can
   * leave running (`runsc create` over an existing id drops the old state but not its processes).
   */
  async hostProcesses(): Promise<Array<{ pid: number; argv: string[] }>> {
    const rootFlag = `--root=${this.#o.root}`;
    const found: Array<{ pid: number; argv: string[] }> = [];
    for (const name of await readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
      const argv = (await readFile(`/proc/${name}/cmdline`, 'latin1').catch(() => '')).split('\0');
      if (!argv.includes(rootFlag) || !/^runsc-(sandbox|gofer)$/.test(argv[0] ?? '')) continue;
      found.push({ pid: Number(name), argv });
    }
    return found;
  }

  /** Removes runsc's state files of a container it no longer lists (`<id>_*`, `runsc-<id>.sock`). */
  async removeState(id: string): Promise<void> {
    const entries = await readdir(this.#o.root).catch(() => [] as string[]);
    await Promise.all(
      entries
        .filter((e) => e.startsWith(`${id}_`) || e === `runsc-${id}.sock`)
        .map((e) => rm(join(this.#o.root, e), { force: true })),
    );
  }
}

/** The bundle directory a runsc-sandbox or runsc-gofer command line names (`--bundle=<dir>` or `--bundle <dir>`). */
export function bundleArg(argv: readonly string[]): string | undefined {
  const i = argv.indexOf('--bundle');
  return (
    argv.find((a) => a.startsWith('--bundle='))?.slice('--bundle='.length) ??
    (i >= 0 ? argv[i + 1] : undefined)
  );
}
