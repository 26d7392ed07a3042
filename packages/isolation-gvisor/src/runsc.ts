import { execa, type ResultPromise } from 'execa';
import { mapRunscError, RunscFailure } from './map-error.ts';

/** Options of {@link Runsc}. */
export interface RunscOptions {
  /** The runsc binary. */
  binary: string;
  /** runsc's state directory (`--root`): one per backend data directory. */
  root: string;
  /** gVisor platform; `ptrace` works everywhere (KVM hangs in nested VMs such as this project's). */
  platform: string;
  /** Limit of one runsc call (not of `exec` sessions). */
  timeoutMs: number;
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
    // --cpu-num-from-quota: the guest sees as many CPUs as its quota, so its kernel runs fewer threads.
    return [
      '--root',
      this.#o.root,
      '--network=none',
      `--platform=${this.#o.platform}`,
      '--cpu-num-from-quota',
    ];
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
   * `runsc create`, with the container's stdio detached from the host: stdin and stdout are /dev/null,
   * and stderr is a pipe read only until `create` itself exits (for its error message), then closed. The
   * sandbox inherits these as PID 1's stdio, so nothing a sandbox prints can land in a host file.
   */
  async create(bundle: string, id: string): Promise<void> {
    let child: ResultPromise;
    try {
      child = execa(this.#o.binary, [...this.globalArgs(), 'create', '--bundle', bundle, id], {
        stdin: 'ignore',
        stdout: 'ignore',
        stderr: 'pipe',
        buffer: false,
        reject: false,
        timeout: this.#o.timeoutMs,
        killSignal: 'SIGKILL',
      });
    } catch (error) {
      throw mapRunscError(error, `sandbox ${id}`);
    }
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      if (stderr.length < 64 * 1024) stderr += chunk;
    });
    const settled = child.then(
      (r) => r,
      (error: unknown) => error,
    );
    const exit = await new Promise<{ code: number | null; error?: unknown }>((resolve) => {
      child.once('exit', (code) => resolve({ code }));
      child.once('error', (error) => resolve({ code: null, error }));
    });
    child.stderr?.destroy();
    await settled;
    if (exit.error !== undefined) throw mapRunscError(exit.error, `sandbox ${id}`);
    if (exit.code !== 0) throw mapRunscError(new RunscFailure(stderr.trim(), exit.code), `sandbox ${id}`);
  }
}
