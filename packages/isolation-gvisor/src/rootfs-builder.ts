import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import {
  chmod,
  lchown,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  rmdir,
  stat,
  statfs,
  writeFile,
} from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { TextDecoder } from 'node:util';
import {
  type ExecResult,
  IsolationError,
  type IsolationErrorCode,
  isIsolationError,
} from '@studio/isolation';
import { AGENT_COMMAND, AgentClient } from '@studio/sandbox-agent';
import { defaultHeadroomBytes, formatBytes, LoopWorkspaces, reserveVerdict } from '@studio/workspaces';
import { execa } from 'execa';
import { makeFifos, openBoundFifos } from './agent-fifos.ts';
import { type LimitEvents, limitEvents, removeCgroups } from './cgroups.ts';
import { mapRunscError } from './map-error.ts';
import { DOCKER_DEFAULT_CAPS, rootfsBuildSpec } from './oci-spec.ts';
import { bundleArg, Runsc, runscTooOld } from './runsc.ts';
import { mountTable, SandboxRoot, unmountAll } from './sandbox-root.ts';
import { type OciSeccomp, readOciSeccomp } from './seccomp-profile.ts';

/** A command run in the build, as `root` or as the sandbox user `studio` (uid/gid 1000). */
export interface BuildStepRun {
  kind: 'run';
  /** argv, run without a shell; a shell line is `['/bin/sh', '-c', line]`. */
  command: string[];
  user: 'root' | 'studio';
  /** Added to the build's `env` for this step (wins over it). */
  env?: Record<string, string>;
  /** Absolute working directory; default `/`. It must exist (a missing one fails the step). */
  cwd?: string;
  /** Shown in the log and in errors, e.g. `RUN apt-get install -y jq`. */
  description: string;
}

/** A file written into the image (parents created as root, mode 0755); an existing file or link is replaced. */
export interface BuildStepFile {
  kind: 'file';
  /** Absolute, normalised path in the image. */
  path: string;
  content: Uint8Array;
  /** Permission bits (0 to 0o7777; setuid and setgid bits are removed from the output like any other). */
  mode: number;
  owner: 'root' | 'studio';
  description: string;
}

export type BuildStep = BuildStepRun | BuildStepFile;

/** The limits of one build. The sandbox's runtime enforces each; none is a polling loop. */
export interface RootfsBuildLimits {
  /** Memory of the whole build sandbox (its kernel included), swap equal to it. */
  memoryBytes: number;
  /** CPU quota in cores (a cap). */
  cpus: number;
  /** Processes and threads inside the build (RLIMIT_NPROC, which gVisor enforces for root too). */
  pids: number;
  /**
   * What the build may add or change: the size of the ext4 image that holds the root overlay's upper layer,
   * preallocated on the data directory's disk for the build's duration (filling it is ENOSPC in the build).
   */
  diskBytes: number;
  /** Inodes of that image. Default one per 8 KiB of `diskBytes` (at least 16,384). */
  inodes?: number;
  /** Size of each of the build's tmpfs, /tmp and /workspace (memory, discarded). Default memoryBytes / 4, at most 1 GiB. */
  tmpBytes?: number;
  /** Wall-clock limit of the whole build: sandbox, steps, copy and pack. */
  timeoutMs: number;
}

/** What {@link RootfsBuilder.build} makes. */
export interface RootfsBuildOptions {
  /** The base root filesystem directory (never modified: it is the overlay's read-only lower layer). */
  base: string;
  /**
   * Absolute path of the directory to create (it must not exist; its parent must). It appears atomically (a
   * rename), complete or not at all: `rootfs/`, `rootfs.tar` and `.complete`.
   */
  output: string;
  steps: readonly BuildStep[];
  limits: RootfsBuildLimits;
  /** Environment of every run step (e.g. the egress proxy's variables). */
  env?: Record<string, string>;
  /**
   * A TCP port on the build sandbox's loopback (3128, or any free one if that fails) whose connections reach
   * `onConnection` as byte streams carried by the agent: the build's only way out. Without it the build has no
   * network at all.
   */
  egress?: {
    /** Each connection a build program opens to the port. An 'error' listener is already attached. */
    onConnection: (socket: Duplex) => void;
    /** Called with the port before the first step; its variables are added to every run step's env. */
    env: (port: number) => Record<string, string>;
  };
  /** Live log: a header line per step (`#3 RUN …`), then the step's stdout and stderr as they come. */
  onLog?: (text: string) => void;
  /** Aborting stops the build (reason `cancelled`) and removes everything it made. */
  signal?: AbortSignal;
}

/** A finished build. */
export interface RootfsBuildResult {
  /** The output directory. */
  output: string;
  /** `<output>/rootfs`: the root filesystem for the gVisor backend. */
  rootfs: string;
  /** `<output>/rootfs.tar`: the same tree packed (`tar --numeric-owner --sort=name`), for `docker import`. */
  tar: string;
  /** sha256 (hex) of `tar`, also written to `<output>/.complete`. */
  digest: string;
  /** Size of `tar` in bytes. */
  bytes: number;
  /** From the call to the output's rename. */
  durationMs: number;
  /**
   * Where the time went (ms): making the image and overlay, starting the sandbox, the steps, the checks of the
   * result, and the pack (one tar stream, written as `rootfs.tar` and unpacked into `rootfs/` at once).
   */
  timings: {
    prepareMs: number;
    startMs: number;
    stepsMs: number;
    finishMs: number;
    packMs: number;
  };
}

/** Why a build failed, in `details.reason` of its `IsolationError`. */
export type BuildFailureReason =
  | 'step-failed'
  | 'timeout'
  | 'disk-full'
  | 'memory'
  | 'pids'
  | 'cancelled'
  | 'invalid-output';

/** The `details` of an `IsolationError` thrown by a failed build; read it with {@link buildFailureOf}. */
export interface BuildFailure {
  reason: BuildFailureReason;
  /** The step running when the build failed: `index` into `steps` (0-based; messages count from 1). */
  step?: { index: number; description: string };
  /** The step's exit code (null when a signal ended it or it never ended). */
  exitCode?: number | null;
  /** The last lines of the step's output. */
  outputTail?: string;
}

/** The error code each failure reason is thrown with. */
const REASON_CODES: Record<BuildFailureReason, IsolationErrorCode> = {
  'step-failed': 'INVALID_INPUT',
  'invalid-output': 'INVALID_INPUT',
  timeout: 'TIMEOUT',
  'disk-full': 'RESOURCE_LIMIT',
  memory: 'RESOURCE_LIMIT',
  pids: 'RESOURCE_LIMIT',
  cancelled: 'CANCELLED',
};

/** The build failure an error carries, or undefined when it is not one (a host or runtime failure). */
export function buildFailureOf(error: unknown): BuildFailure | undefined {
  if (!isIsolationError(error)) return undefined;
  const reason = error.details?.reason;
  return typeof reason === 'string' && Object.hasOwn(REASON_CODES, reason)
    ? (error.details as unknown as BuildFailure)
    : undefined;
}

/** Options of {@link RootfsBuilder}. */
export interface RootfsBuilderOptions {
  /** Builds live in `<dataDir>/builds/` (bundles, disk images, mounts, runsc's state): see {@link RootfsBuilder.cleanup}. */
  dataDir: string;
  /** Host directory with the agent binary, mounted read-only at /opt/studio as in sessions. */
  agentDir: string;
  /** The sessions' Docker-format seccomp profile (the API's STUDIO_SECCOMP_PROFILE). */
  seccompProfile: string;
  /** The runsc binary. Default `runsc` (on PATH). */
  runscPath?: string;
  /** gVisor platform. Default `systrap` (KVM hangs in nested VMs). */
  platform?: 'ptrace' | 'kvm' | 'systrap';
  /** Host cgroup under which each build gets `<cgroupParent>/<id>`. Default `studio-builds`. */
  cgroupParent?: string;
  /** Bytes of the data directory's (and output's) disk no build may take. Default 5% of it, at most 1 GiB. */
  diskHeadroomBytes?: number;
  /** How long the build sandbox's agent may take to answer after the start. Default 30 s. */
  agentTimeoutMs?: number;
}

const BUILD_ID = /^build-[0-9a-f]{16}$/;
const MiB = 1024 * 1024;
/** Output of one step kept (and shown in the log); past it the step runs on, unseen. */
const MAX_STEP_LOG_BYTES = 4 * MiB;
/** Output kept for an error's tail. */
const TAIL_BYTES = 4096;
const TAIL_LINES = 12;
/** Free space (or inodes) under which a build's image counts as full. */
const FULL_BYTES = MiB;
const FULL_INODES = 32;
/** What a shell, Python or Node prints when fork or clone fails for the process limit (EAGAIN). */
const FORK_FAILED =
  /\b(?:fork|clone|spawn)\b[^\n]*(?:Resource temporarily unavailable|EAGAIN)|\bcan(?:no|')t fork\b|\bCannot fork\b/i;
/** Runs a step in its directory (the agent's exec only takes workspace-relative ones). */
const CD_WRAPPER = 'cd -- "$1" || exit 1; shift; exec "$@"';
/** Drops root for a `studio` step: uid/gid 1000, no other group, no capability left (setuid from 0 clears them). */
const AS_STUDIO = ['setpriv', '--reuid=1000', '--regid=1000', '--clear-groups', '--'];
/** Writes stdin to $1 as root: parents made, an existing file or link replaced, then owner and mode set. */
const WRITE_FILE = [
  'set -e',
  'p=$1',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion, not a template
  'd=${p%/*}',
  'if [ -n "$d" ]; then mkdir -p -- "$d"; fi',
  'if [ -L "$p" ] || [ -f "$p" ]; then rm -f -- "$p"; fi',
  'cat >"$p"',
  'chown -- "$2" "$p"',
  'chmod -- "$3" "$p"',
].join('\n');
/** Mount points a session needs in the image: path, uid, gid, mode. */
const REQUIRED_DIRS: ReadonlyArray<readonly [string, number, number, number]> = [
  ['workspace', 1000, 1000, 0o755],
  ['opt/studio', 0, 0, 0o755],
  ['tmp', 0, 0, 0o1777],
];
/** Files a container runtime leaves in a root, which a template must not carry. */
const JUNK = ['.dockerenv', '.dockerinit'];

/** Build ids running in this process, across builders: cleanup() never touches them. */
const running = new Set<string>();

/** The record `<dataDir>/builds/<id>/build.json`, written before anything else of the build exists. */
interface BuildRecord {
  id: string;
  /** The process running the build and its start time (clock ticks since boot), so a reused pid is not it. */
  pid: number;
  pidStart: string | undefined;
  /** The temporary output directory beside `output`. */
  temp: string;
}

/**
 * Builds a template's root filesystem (issue 19): the user's steps run as root in a gVisor sandbox (root there is
 * the Sentry's, with Docker's default capabilities in gVisor's kernel only), on an overlay over `base` whose
 * upper layer sits on a loop-mounted ext4 image of `diskBytes`, with the session's seccomp profile, memory, CPU
 * and process limits, a wall-clock limit and no network but an optional egress port the host answers. Once the
 * sandbox is gone, the merged result is checked (mount points, the `studio` user), packed next to `output` without
 * privilege (no setuid/setgid bit; no xattrs, so no file capabilities), unpacked beside its tar and renamed into
 * place.
 *
 * Whatever happens (a failed step, a limit, a cancel), nothing of a failed build remains: no output, sandbox,
 * mount, loop device, image or cgroup. What a killed process leaves, {@link cleanup} removes.
 */
export class RootfsBuilder {
  readonly #o: RootfsBuilderOptions;
  readonly #runsc: Runsc;
  readonly #buildsDir: string;
  #seccomp: Promise<OciSeccomp> | undefined;
  readonly #baseSizes = new Map<string, Promise<number>>();

  constructor(options: RootfsBuilderOptions) {
    this.#o = options;
    this.#buildsDir = join(options.dataDir, 'builds');
    this.#runsc = new Runsc({
      binary: options.runscPath ?? 'runsc',
      root: join(this.#buildsDir, 'runsc'),
      platform: options.platform ?? 'systrap',
      timeoutMs: 60_000,
    });
  }

  /** Whether builds can run here (runsc new enough, root, overlay, the profile and the agent), and if not why. */
  async available(): Promise<{ ok: true } | { ok: false; reason: string }> {
    try {
      const tooOld = runscTooOld(await this.#runsc.version());
      if (tooOld !== undefined) return { ok: false, reason: tooOld };
    } catch (error) {
      return { ok: false, reason: mapRunscError(error, 'runsc').message };
    }
    if (process.getuid?.() !== 0) {
      return {
        ok: false,
        reason: 'template builds need root (runsc, cgroups, loop and overlay mounts): run Studio as root',
      };
    }
    if (!(await readFile('/proc/filesystems', 'utf8').catch(() => '')).includes('overlay')) {
      return { ok: false, reason: 'the kernel has no overlay filesystem: modprobe overlay' };
    }
    const agent = await stat(join(this.#o.agentDir, basename(AGENT_COMMAND[0] ?? ''))).catch(() => undefined);
    if (!agent?.isFile()) {
      return {
        ok: false,
        reason: `no agent binary in ${this.#o.agentDir}: build it with packages/sandbox-agent/scripts/build-agent.sh`,
      };
    }
    try {
      await this.#seccompFilter();
    } catch (error) {
      return { ok: false, reason: (error as Error).message };
    }
    return { ok: true };
  }

  /**
   * Runs the steps and makes `output`. Rejects with an `IsolationError`: with {@link BuildFailure} details
   * (`buildFailureOf`) when the build itself failed (a step, a limit, the time, a cancel, an unusable result);
   * `INVALID_INPUT` for bad options, `NOT_FOUND` for a missing base, `ALREADY_EXISTS` for an existing output,
   * `HOST_DISK_FULL` when the host has no room, `UNAVAILABLE`/`INTERNAL` for the runtime.
   */
  async build(options: RootfsBuildOptions): Promise<RootfsBuildResult> {
    const t0 = performance.now();
    const o = checkOptions(options);
    if (o.signal?.aborted) throw failure('cancelled', 'the build was cancelled before it started');
    await checkBase(o.base);
    await checkOutputFree(o.output);
    const seccomp = await this.#seccompFilter();
    const id = `build-${randomBytes(8).toString('hex')}`;
    running.add(id);
    const run = new BuildRun(this.#context(), id, o, seccomp, t0);
    try {
      return await run.execute();
    } finally {
      await run.teardown();
      running.delete(id);
    }
  }

  /**
   * Removes what builds that died left in `<dataDir>/builds/` (their process was killed, or a teardown failed):
   * runsc containers and their host processes, cgroups, overlay and loop mounts, loop devices, disk images,
   * bundles and temporary outputs beside the output directories. Builds running in this process, or in another
   * live process, are left alone. Returns the build ids (and stray container ids) it removed.
   */
  async cleanup(): Promise<string[]> {
    const removed: string[] = [];
    const names = await readdir(this.#buildsDir).catch(() => [] as string[]);
    const live = new Set<string>(running);
    for (const id of names.filter((n) => BUILD_ID.test(n))) {
      if (running.has(id)) continue;
      const record = await readRecord(join(this.#buildsDir, id));
      const owned = record
        ? record.pid !== process.pid && (await isAlive(record.pid, record.pidStart))
        : await isRecent(join(this.#buildsDir, id)); // a build of another process between mkdir and its record
      if (owned) {
        live.add(id);
        continue;
      }
      await this.#removeBuild(id, record);
      removed.push(id);
    }
    // Containers and processes of this runsc root with no build directory any more.
    for (const c of await this.#runsc.list().catch(() => [])) {
      if (live.has(c.id) || removed.includes(c.id)) continue;
      await this.#runsc.run(['delete', '--force', c.id], `build ${c.id}`).catch(() => undefined);
      await this.#runsc.removeState(c.id);
      removed.push(c.id);
    }
    for (const { pid, argv } of await this.#runsc.hostProcesses()) {
      if (![...live].some((id) => ownsProcess(this.#buildsDir, id, argv))) killQuietly(pid);
    }
    return removed;
  }

  async #removeBuild(id: string, record: BuildRecord | undefined): Promise<void> {
    const bundle = join(this.#buildsDir, id);
    await this.#runsc.run(['delete', '--force', id], `build ${id}`).catch(() => undefined);
    for (const { pid, argv } of await this.#runsc.hostProcesses()) {
      if (ownsProcess(this.#buildsDir, id, argv)) killQuietly(pid);
    }
    await removeCgroups(this.#cgroupsPath(id));
    await releaseMounts(bundle);
    if (record && isTempOf(record.temp, id)) await rm(record.temp, { recursive: true, force: true });
    await rm(bundle, { recursive: true, force: true });
    await this.#runsc.removeState(id);
  }

  #context(): BuilderContext {
    return {
      options: this.#o,
      runsc: this.#runsc,
      buildsDir: this.#buildsDir,
      cgroupsPath: (id) => this.#cgroupsPath(id),
      baseBytes: (base) => this.#baseBytes(base),
    };
  }

  #cgroupsPath(id: string): string {
    return `/${this.#o.cgroupParent ?? 'studio-builds'}/${id}`;
  }

  /** The base's size on disk (du), once per base path: base paths name their content (build.sh's hash). */
  #baseBytes(base: string): Promise<number> {
    let size = this.#baseSizes.get(base);
    if (!size) {
      // A failure only makes the room check count the build's own bytes.
      size = execa('du', ['-s', '-x', '-B1', base], { stdin: 'ignore', timeout: 120_000 }).then(
        (r) => Number(r.stdout.split('\t')[0]) || 0,
        () => 0,
      );
      this.#baseSizes.set(base, size);
    }
    return size;
  }

  /** The sessions' profile, read for the capabilities a build's root holds (adds `chroot`). */
  #seccompFilter(): Promise<OciSeccomp> {
    this.#seccomp ??= readOciSeccomp(this.#o.seccompProfile, { caps: DOCKER_DEFAULT_CAPS });
    this.#seccomp.catch(() => {
      this.#seccomp = undefined;
    });
    return this.#seccomp;
  }
}

interface BuilderContext {
  options: RootfsBuilderOptions;
  runsc: Runsc;
  buildsDir: string;
  cgroupsPath: (id: string) => string;
  baseBytes: (base: string) => Promise<number>;
}

/** Thrown into the build's phases when it must stop (the time limit, the caller's signal). */
class Stop extends Error {
  constructor(readonly reason: 'timeout' | 'cancelled') {
    super(reason);
  }
}

/** One build: its resources, in the order they are made, and the teardown that removes whichever exist. */
class BuildRun {
  readonly #c: BuilderContext;
  readonly #id: string;
  readonly #o: RootfsBuildOptions;
  readonly #seccomp: OciSeccomp;
  readonly #t0: number;
  readonly #bundle: string;
  readonly #temp: string;
  readonly #cgroupsPath: string;
  readonly #disk: LoopWorkspaces;
  readonly #root: SandboxRoot;
  readonly #stop = new AbortController();
  readonly #timer: NodeJS.Timeout;
  readonly #onAbort = () => this.#stop.abort(new Stop('cancelled'));
  #client: AgentClient | undefined;
  #listener: { close(): void } | undefined;
  #started = false;
  #diskMount: string | undefined;
  #done = false;
  /** The step running now (for a timeout's message). */
  #current: number | undefined;

  constructor(c: BuilderContext, id: string, o: RootfsBuildOptions, seccomp: OciSeccomp, t0: number) {
    this.#c = c;
    this.#id = id;
    this.#o = o;
    this.#seccomp = seccomp;
    this.#t0 = t0;
    this.#bundle = join(c.buildsDir, id);
    this.#temp = join(dirname(o.output), `.${basename(o.output)}.tmp-${id}`);
    this.#cgroupsPath = c.cgroupsPath(id);
    this.#disk = new LoopWorkspaces(this.#bundle, {
      ...(c.options.diskHeadroomBytes === undefined ? {} : { headroomBytes: c.options.diskHeadroomBytes }),
    });
    this.#root = new SandboxRoot(this.#bundle, {
      layersDir: this.#disk.mountPath('disk'),
      mountOptions: ['nosuid', 'nodev'],
    });
    o.signal?.addEventListener('abort', this.#onAbort, { once: true });
    this.#timer = setTimeout(() => this.#stop.abort(new Stop('timeout')), o.limits.timeoutMs);
  }

  async execute(): Promise<RootfsBuildResult> {
    try {
      return await this.#execute();
    } catch (error) {
      const explained = this.#explainStop(error);
      if (isIsolationError(explained)) throw explained;
      // A host command (cp, find, tar) or call failed: the operator's problem, not the template's.
      const e = explained as { stderr?: unknown; message?: unknown };
      const text = String((typeof e.stderr === 'string' && e.stderr) || e.message || explained).trim();
      throw new IsolationError('INTERNAL', `the template build failed on the host: ${text.slice(0, 500)}`, {
        cause: explained,
      });
    }
  }

  async #execute(): Promise<RootfsBuildResult> {
    const o = this.#o;
    const baseBytes = this.#c.baseBytes(o.base);
    baseBytes.catch(() => undefined);
    let t = performance.now();
    const lap = () => {
      const now = performance.now();
      const ms = Math.round(now - t);
      t = now;
      return ms;
    };

    // Recorded before anything is made, so a crash at any point leaves something cleanup() can find and undo.
    await mkdir(this.#c.buildsDir, { recursive: true, mode: 0o700 });
    await mkdir(this.#bundle, { mode: 0o700 });
    const record: BuildRecord = {
      id: this.#id,
      pid: process.pid,
      pidStart: await startTime(process.pid),
      temp: this.#temp,
    };
    await writeFile(join(this.#bundle, 'build.json'), `${JSON.stringify(record)}\n`, { mode: 0o600 });

    const limits = o.limits;
    this.#diskMount = await this.#guard(
      this.#disk
        .create('disk', limits.diskBytes, limits.inodes ?? defaultInodes(limits.diskBytes))
        .catch((error: unknown) => {
          if (!isIsolationError(error, 'HOST_DISK_FULL')) throw error;
          // The workspaces' refusal, in a build's words (no host path: the API shows it to the user).
          throw new IsolationError(
            'HOST_DISK_FULL',
            `the host has no room for the build's ${formatBytes(limits.diskBytes)} disk: the operator must free space on the data directory's disk; or build with a smaller disk`,
            { cause: error, ...(error.details ? { details: error.details } : {}) },
          );
        }),
    );
    // The merged root directory takes its owner and mode from the upper directory: the base's.
    const top = await stat(o.base);
    await mkdir(this.#root.upperDir, { mode: top.mode & 0o7777 });
    await chmod(this.#root.upperDir, top.mode & 0o7777);
    await lchown(this.#root.upperDir, top.uid, top.gid);
    const rootfs = await this.#guard(this.#root.mount(o.base));
    const spec = rootfsBuildSpec({
      rootfs,
      agentDir: this.#c.options.agentDir,
      command: AGENT_COMMAND,
      seccomp: this.#seccomp,
      limits: {
        memoryBytes: limits.memoryBytes,
        cpus: limits.cpus,
        pids: limits.pids,
        tmpBytes: limits.tmpBytes ?? Math.min(1024 * MiB, Math.floor(limits.memoryBytes / 4)),
      },
      cgroupsPath: this.#cgroupsPath,
      annotations: { 'studio.label.studio.managed': 'true', 'studio.label.studio.build': this.#id },
    });
    await writeFile(join(this.#bundle, 'config.json'), JSON.stringify(spec), { mode: 0o600 });
    const prepareMs = lap();

    await makeFifos(this.#bundle);
    const fifos = openBoundFifos(this.#bundle);
    fifos.input.on('error', () => fifos.input.destroy());
    fifos.output.on('error', () => fifos.output.destroy());
    const client = new AgentClient({ input: fifos.input, output: fifos.output });
    this.#client = client;
    client.closed.then(() => {
      fifos.input.destroy();
      fifos.output.destroy();
    });
    this.#started = true;
    try {
      await this.#guard(
        this.#c.runsc.runDetached(this.#bundle, this.#id, fifos.sandboxStdin, fifos.sandboxStdout),
      );
    } finally {
      fifos.closeSandboxEnds();
    }
    await this.#guard(client.hello(this.#c.options.agentTimeoutMs ?? 30_000), () => void client.close());
    let egressEnv: Record<string, string> = {};
    const egress = o.egress;
    if (egress) {
      const onConnection = (socket: Duplex) => {
        // The callback's own listeners see errors too; this one only keeps an unhandled one from throwing.
        socket.on('error', () => undefined);
        try {
          egress.onConnection(socket);
        } catch {
          socket.destroy();
        }
      };
      const listener = await this.#guard(
        client.listen(3128, onConnection).catch(() => client.listen(0, onConnection)),
        () => void client.close(),
      );
      this.#listener = listener;
      egressEnv = egress.env(listener.port);
    }
    const startMs = lap();

    for (const [index, step] of o.steps.entries()) {
      this.#current = index;
      await this.#runStep(client, index, step, { ...(o.env ?? {}), ...egressEnv });
    }
    this.#current = undefined;
    const stepsMs = lap();
    this.#log(`#${o.steps.length + 1} export: check and pack the root filesystem\n`);

    // The sandbox goes first: nothing may change the tree while it is fixed up and copied.
    this.#listener?.close();
    await client.close();
    await this.#c.runsc.run(['delete', '--force', this.#id], `build ${this.#id}`);
    this.#started = false;
    await this.#finish(rootfs);
    const finishMs = lap();

    await this.#checkHostRoom(await baseBytes);
    await mkdir(this.#temp, { mode: 0o700 });
    const tar = join(this.#temp, 'rootfs.tar');
    const out = join(this.#temp, 'rootfs');
    await mkdir(out, { mode: 0o700 });
    const { digest, bytes } = await this.#guard(packAndCopy(rootfs, tar, out, this.#stop.signal));
    await writeFile(join(this.#temp, '.complete'), `${digest}\n`, { mode: 0o644 });
    await chmod(this.#temp, 0o755);
    const packMs = lap();
    // The image's space goes back to the host before the output appears.
    await this.#releaseMounts();
    await checkOutputFree(o.output);
    await rename(this.#temp, o.output);
    this.#done = true;
    return {
      output: o.output,
      rootfs: join(o.output, 'rootfs'),
      tar: join(o.output, 'rootfs.tar'),
      digest,
      bytes,
      durationMs: Math.round(performance.now() - this.#t0),
      timings: { prepareMs, startMs, stepsMs, finishMs, packMs },
    };
  }

  /** Runs one step; returns when it succeeded, throws its failure otherwise. */
  async #runStep(
    client: AgentClient,
    index: number,
    step: BuildStep,
    env: Record<string, string>,
  ): Promise<void> {
    const o = this.#o;
    const label = `step ${index + 1} (${oneLine(step.description)})`;
    this.#log(`#${index + 1} ${oneLine(step.description)}\n`);
    const home = (user: 'root' | 'studio') =>
      user === 'root'
        ? { HOME: '/root', USER: 'root', LOGNAME: 'root' }
        : { HOME: '/home/studio', USER: 'studio', LOGNAME: 'studio' };
    let argv: string[];
    let stepEnv: Record<string, string>;
    let stdin: Uint8Array | undefined;
    if (step.kind === 'run') {
      argv = [
        '/bin/sh',
        '-c',
        CD_WRAPPER,
        'studio-step',
        step.cwd ?? '/',
        ...(step.user === 'studio' ? AS_STUDIO : []),
        ...step.command,
      ];
      stepEnv = { ...home(step.user), ...env, ...(step.env ?? {}) };
    } else {
      const owner = step.owner === 'root' ? '0:0' : '1000:1000';
      argv = [
        '/bin/sh',
        '-c',
        WRITE_FILE,
        'studio-file',
        step.path,
        owner,
        step.mode.toString(8).padStart(4, '0'),
      ];
      stepEnv = home('root');
      stdin = step.content;
    }
    const tail = new Tail();
    let forkFailed = false;
    const decoders = [new TextDecoder(), new TextDecoder()];
    const onOutput = (which: 0 | 1) => (chunk: Uint8Array) => {
      const text = (decoders[which] as TextDecoder).decode(chunk, { stream: true });
      tail.push(text);
      if (!forkFailed && FORK_FAILED.test(text)) forkFailed = true;
      this.#log(text);
    };
    const before = await limitEvents(this.#cgroupsPath);
    let result: ExecResult | undefined;
    let lost: unknown;
    const remaining = Math.max(1, Math.ceil(this.#deadline() - performance.now()));
    const exec = client.exec(argv, {
      env: stepEnv,
      timeoutMs: remaining,
      maxOutputBytes: MAX_STEP_LOG_BYTES,
      onStdout: onOutput(0),
      onStderr: onOutput(1),
      signal: this.#stop.signal,
      ...(stdin === undefined ? {} : { stdin }),
    });
    exec.catch(() => undefined);
    try {
      result = await this.#guard(exec);
    } catch (error) {
      // RESOURCE_LIMIT: the agent could not fork the step's process (the process limit).
      const code = isIsolationError(error) ? error.code : undefined;
      if (code === 'RESOURCE_LIMIT') forkFailed = true;
      else if (code !== undefined && code !== 'UNAVAILABLE') {
        throw failure('step-failed', `${label} could not start: ${(error as Error).message}`, {
          index,
          step,
        });
      } else if (!(error instanceof Stop) && code === undefined) throw error;
      lost = error;
    }
    if (result?.truncated) this.#log(`\n[output past ${formatBytes(MAX_STEP_LOG_BYTES)} not shown]\n`);
    if (result && result.exitCode === 0 && !result.timedOut) return;

    const stopped = lost instanceof Stop ? lost.reason : undefined;
    if (stopped === 'cancelled')
      throw failure('cancelled', `the build was cancelled during ${label}`, { index, step });
    const after = await limitEvents(this.#cgroupsPath);
    const details = { index, step, exitCode: result?.exitCode ?? null, tail: tail.text() };
    const l = o.limits;
    if (result?.oomKilled || rose(before, after, 'oomKills')) {
      throw failure(
        'memory',
        `${label} ran out of memory: the build may use ${formatBytes(l.memoryBytes)} (its kernel and /tmp included): raise the build's memory limit or make the step use less`,
        details,
      );
    }
    if (forkFailed || rose(before, after, 'pidsRefused')) {
      throw failure(
        'pids',
        `${label} ran out of processes: the build may run ${l.pids} processes and threads at once: raise the build's process limit or start fewer`,
        details,
      );
    }
    if (await this.#diskFull()) {
      throw failure(
        'disk-full',
        `${label} ran out of disk: the build used more than ${formatBytes(l.diskBytes)}: raise templates.maxBytes or trim the build`,
        details,
      );
    }
    if (stopped === 'timeout' || result?.timedOut) {
      throw failure(
        'timeout',
        `${label} ran past the build's time limit of ${duration(l.timeoutMs)}: raise it or make the build faster`,
        details,
      );
    }
    if (result === undefined) {
      throw failure(
        'step-failed',
        `${label} failed: the build sandbox stopped${tailSuffix(details.tail)}`,
        details,
      );
    }
    const how = result.signal ? `was killed by ${result.signal}` : `failed with exit code ${result.exitCode}`;
    throw failure('step-failed', `${label} ${how}${tailSuffix(details.tail)}`, details);
  }

  /**
   * Checks and fixes, on the build's merged root once its sandbox is gone, what sessions rely on: the mount points
   * (real directories with their owners and modes), the user studio, no container junk. This runs on the host
   * over a tree the build wrote, so nothing here follows a link: every path is checked with lstat first, and
   * /etc/passwd is opened with O_NOFOLLOW. Fixes land in the overlay's upper layer like the build's own changes.
   * Setuid and setgid bits are removed by the pack (`tar --mode=ug-s`), never in place: that would copy up files
   * of the base into a possibly full image.
   */
  async #finish(root: string): Promise<void> {
    for (const name of JUNK) {
      const s = await lstat(join(root, name)).catch(() => undefined);
      if (s && !s.isDirectory()) await rm(join(root, name), { force: true });
    }
    for (const [rel, uid, gid, mode] of REQUIRED_DIRS) {
      const parent = await realDir(root, dirname(rel), true);
      if (parent === undefined) {
        throw failure(
          'invalid-output',
          `the build replaced /${dirname(rel)} with a link or a file: sessions mount /${rel} there; keep /${dirname(rel)} a directory`,
        );
      }
      const path = join(root, rel);
      const s = await lstat(path).catch(() => undefined);
      if (s && !s.isDirectory()) await rm(path, { force: true });
      if (!s?.isDirectory()) await mkdir(path);
      await lchown(path, uid, gid);
      await chmod(path, mode);
    }
    const etc = await realDir(root, 'etc');
    const passwd = etc === undefined ? undefined : await readNoFollow(join(etc, 'passwd'), 4 * MiB);
    const studio = passwd
      ?.split('\n')
      .map((line) => line.split(':'))
      .find((f) => f[0] === 'studio');
    if (studio?.[2] !== '1000' || studio[3] !== '1000') {
      throw failure(
        'invalid-output',
        'the build lost the user studio (uid and gid 1000) from /etc/passwd: sessions run as studio; keep the user (change files, not the account)',
      );
    }
  }

  /** Refuses the copy and tar when they would not leave the host's headroom free on the output's disk. */
  async #checkHostRoom(baseBytes: number): Promise<void> {
    const disk =
      this.#diskMount === undefined ? undefined : await statfs(this.#diskMount).catch(() => undefined);
    const added = disk ? (disk.blocks - disk.bfree) * disk.bsize : this.#o.limits.diskBytes;
    const fs = await statfs(dirname(this.#o.output));
    const sizeBytes = 2 * (baseBytes + added);
    const headroomBytes = this.#c.options.diskHeadroomBytes ?? defaultHeadroomBytes(fs.blocks * fs.bsize);
    const verdict = reserveVerdict({
      availableBytes: fs.bavail * fs.bsize,
      pendingBytes: 0,
      sizeBytes,
      headroomBytes,
    });
    if (!verdict.ok) {
      throw new IsolationError(
        'HOST_DISK_FULL',
        `the host has no room for the built template (about ${formatBytes(sizeBytes)}, its tree and its tar; ${formatBytes(verdict.missingBytes)} missing beside the headroom): the operator must free space on the templates' disk`,
        { details: { sizeBytes, missingBytes: verdict.missingBytes } },
      );
    }
  }

  async #diskFull(): Promise<boolean> {
    if (this.#diskMount === undefined) return false;
    const s = await statfs(this.#diskMount).catch(() => undefined);
    return s !== undefined && (s.bavail * s.bsize < FULL_BYTES || s.ffree < FULL_INODES);
  }

  /** Removes everything this build made that still exists; never throws (cleanup() takes what is left). */
  async teardown(): Promise<void> {
    clearTimeout(this.#timer);
    this.#o.signal?.removeEventListener('abort', this.#onAbort);
    this.#listener?.close();
    await this.#client?.close().catch(() => undefined);
    const runsc = this.#c.runsc;
    if (this.#started)
      await runsc.run(['delete', '--force', this.#id], `build ${this.#id}`).catch(() => undefined);
    for (const { pid, argv } of await runsc.hostProcesses().catch(() => [])) {
      if (ownsProcess(this.#c.buildsDir, this.#id, argv)) killQuietly(pid);
    }
    await removeCgroups(this.#cgroupsPath).catch(() => undefined);
    await this.#releaseMounts().catch(() => undefined);
    if (!this.#done) await rm(this.#temp, { recursive: true, force: true }).catch(() => undefined);
    // The bundle (and its record) last, and only with nothing mounted in it: rm must never walk into a mount.
    if (
      (await mountTable()).every((m) => m.point !== this.#bundle && !m.point.startsWith(`${this.#bundle}/`))
    ) {
      await rm(this.#bundle, { recursive: true, force: true }).catch(() => undefined);
    }
    await runsc.removeState(this.#id).catch(() => undefined);
  }

  /** Unmounts the overlay, then the image (freeing its loop device), and removes the image. */
  async #releaseMounts(): Promise<void> {
    await releaseMounts(this.#bundle);
    this.#diskMount = undefined;
  }

  /**
   * Waits for `p` to settle, then throws {@link Stop} if the build must stop. Nothing is abandoned while it runs
   * (the teardown must not race an operation that could still make a mount or a container): what can be
   * interrupted is, by the stop signal itself (exec, cp, tar) or by `onStop`.
   */
  async #guard<T>(p: Promise<T>, onStop?: () => void): Promise<T> {
    const signal = this.#stop.signal;
    const stop = () => onStop?.();
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });
    try {
      const value = await p;
      if (signal.aborted) throw signal.reason;
      return value;
    } catch (error) {
      throw signal.aborted ? signal.reason : error;
    } finally {
      signal.removeEventListener('abort', stop);
    }
  }

  /** A {@link Stop} outside a step becomes the build's failure; anything else passes unchanged. */
  #explainStop(error: unknown): unknown {
    if (!(error instanceof Stop)) return error;
    const index = this.#current;
    const step = index === undefined ? undefined : this.#o.steps[index];
    const where =
      index === undefined || step === undefined
        ? 'while it was being prepared or packed'
        : `during step ${index + 1} (${oneLine(step.description)})`;
    const at = index === undefined || step === undefined ? {} : { index, step };
    return error.reason === 'cancelled'
      ? failure('cancelled', `the build was cancelled ${where}`, at)
      : failure(
          'timeout',
          `the build ran past its time limit of ${duration(this.#o.limits.timeoutMs)} ${where}: raise it or make the build faster`,
          at,
        );
  }

  #deadline(): number {
    return this.#t0 + this.#o.limits.timeoutMs;
  }

  #log(text: string): void {
    try {
      this.#o.onLog?.(text);
    } catch {
      // A failing log consumer must not fail the build.
    }
  }
}

/** The failure of a build, as the one error class of the isolation packages. */
function failure(
  reason: BuildFailureReason,
  message: string,
  at: { index?: number; step?: BuildStep; exitCode?: number | null; tail?: string } = {},
): IsolationError {
  const details: BuildFailure = { reason };
  if (at.index !== undefined && at.step !== undefined)
    details.step = { index: at.index, description: at.step.description };
  if (at.exitCode !== undefined) details.exitCode = at.exitCode;
  if (at.tail) details.outputTail = at.tail;
  return new IsolationError(REASON_CODES[reason], message, {
    details: {
      ...details,
      ...(reason === 'disk-full' ? { limit: 'disk' } : {}),
      ...(reason === 'memory' || reason === 'pids' ? { limit: reason } : {}),
    },
  });
}

function tailSuffix(tail: string): string {
  return tail ? `:\n${tail}` : ' (no output)';
}

function rose(
  before: LimitEvents | undefined,
  after: LimitEvents | undefined,
  key: keyof LimitEvents,
): boolean {
  return after !== undefined && after[key] > (before?.[key] ?? 0);
}

/** The last lines of a step's output (stdout and stderr as they came). */
class Tail {
  #text = '';

  push(text: string): void {
    this.#text = (this.#text + text).slice(-TAIL_BYTES);
  }

  text(): string {
    return this.#text.trimEnd().split('\n').slice(-TAIL_LINES).join('\n');
  }
}

/**
 * Packs `src` into `tarFile` as build.sh's pack_tar does (`tar --numeric-owner --sort=name`), with every setuid and
 * setgid bit removed (`--mode=ug-s`, as customize.sh strips the base image) and no xattrs (so no file
 * capabilities: tar stores none without `--xattrs`, and gVisor's gofer refuses to set any, measured); then unpacks
 * that file into `dir` while hashing it, so the tree and the tar are the same bytes. Sockets are skipped by tar.
 * The archive holds only what tar read from a real tree (relative names without `..`, links stored as links), so
 * unpacking it writes nothing outside `dir`. Measured here: one tar to a file and one unpack took 3.5 s for the
 * 300 MB default image where a tee into both at once took 7 s (small pipe writes on a loaded 2-core host), and a
 * `cp -a` of the overlay 6-8 s on its own.
 */
async function packAndCopy(
  src: string,
  tarFile: string,
  dir: string,
  signal: AbortSignal,
): Promise<{ digest: string; bytes: number }> {
  const opts = { stdin: 'ignore', cancelSignal: signal, forceKillAfterDelay: 1000, maxBuffer: MiB } as const;
  try {
    await execa(
      'tar',
      [
        '--numeric-owner',
        '--sort=name',
        '--mode=ug-s',
        '--warning=no-file-ignored',
        '-C',
        src,
        '-cf',
        tarFile,
        '.',
      ],
      opts,
    );
    const hash = createHash('sha256');
    let bytes = 0;
    const hashed = (async () => {
      const file = await open(tarFile, fsConstants.O_RDONLY);
      try {
        for await (const chunk of file.createReadStream({
          highWaterMark: 4 * MiB,
        }) as AsyncIterable<Buffer>) {
          hash.update(chunk);
          bytes += chunk.length;
        }
      } finally {
        await file.close().catch(() => undefined);
      }
    })();
    hashed.catch(() => undefined);
    await Promise.all([execa('tar', ['--numeric-owner', '-xpf', tarFile, '-C', dir], opts), hashed]);
    return { digest: hash.digest('hex'), bytes };
  } catch (error) {
    if (/No space left/i.test(String((error as { stderr?: unknown }).stderr ?? error))) {
      throw new IsolationError(
        'HOST_DISK_FULL',
        "the host's disk filled while the template was packed: the operator must free space on the templates' disk",
        { cause: error },
      );
    }
    throw error;
  }
}

/** Unmounts everything under a build's bundle (the overlay before the image it sits on), then removes the image. */
async function releaseMounts(bundle: string): Promise<void> {
  const root = join(bundle, 'rootfs');
  if ((await mountTable()).some((m) => m.point === root)) {
    await execa('umount', [root], { stdin: 'ignore', timeout: 30_000 }).catch(() => undefined);
  }
  await unmountAll(bundle);
  await detachLoops(bundle);
  await rm(join(bundle, 'workspaces'), { recursive: true, force: true });
  await rmdir(root).catch(() => undefined);
}

/** Loop devices still attached to an image under `dir` (a crash between losetup and mount), detached. */
async function detachLoops(dir: string): Promise<void> {
  const out = await execa('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'], {
    stdin: 'ignore',
    timeout: 30_000,
  }).catch(() => undefined);
  if (!out?.stdout) return;
  const devices =
    (JSON.parse(out.stdout) as { loopdevices?: Array<{ name: string; 'back-file'?: string | null }> })
      .loopdevices ?? [];
  for (const d of devices) {
    const file = (d['back-file'] ?? '').replace(/ \(deleted\)$/, '');
    if (file.startsWith(`${dir}/`))
      await execa('losetup', ['-d', d.name], { stdin: 'ignore', timeout: 30_000 }).catch(() => undefined);
  }
}

/** Whether a runsc-sandbox or runsc-gofer command line belongs to build `id`. */
function ownsProcess(buildsDir: string, id: string, argv: readonly string[]): boolean {
  const bundle = bundleArg(argv)?.replace(/\/$/, '');
  return bundle === join(buildsDir, id) || argv.filter(Boolean).at(-1) === id;
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** A temporary output directory this builder named for build `id` (never an arbitrary path read from a file). */
function isTempOf(path: string, id: string): boolean {
  return (
    typeof path === 'string' &&
    path.startsWith('/') &&
    basename(path).startsWith('.') &&
    basename(path).endsWith(`.tmp-${id}`)
  );
}

async function readRecord(bundle: string): Promise<BuildRecord | undefined> {
  try {
    const r = JSON.parse(await readFile(join(bundle, 'build.json'), 'utf8')) as BuildRecord;
    return typeof r.pid === 'number' && typeof r.temp === 'string' ? r : undefined;
  } catch {
    return undefined;
  }
}

/** A process's start time (field 22 of /proc/<pid>/stat), which tells a reused pid from the one recorded. */
async function startTime(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}

/** Whether a directory was made in the last minute. */
async function isRecent(dir: string): Promise<boolean> {
  const s = await stat(dir).catch(() => undefined);
  return s !== undefined && Date.now() - s.mtimeMs < 60_000;
}

async function isAlive(pid: number, started: string | undefined): Promise<boolean> {
  const now = await startTime(pid);
  return now !== undefined && (started === undefined || now === started);
}

/** `root/rel` when every component of it is a real directory (no symlink), else undefined; `create` makes missing ones. */
async function realDir(root: string, rel: string, create = false): Promise<string | undefined> {
  let path = root;
  for (const part of rel.split('/').filter((p) => p && p !== '.')) {
    path = join(path, part);
    let s = await lstat(path).catch(() => undefined);
    if (s === undefined && create) {
      // A parent the build removed (rm -rf /opt): made again as the base image has it, root's and 0755.
      await mkdir(path, { mode: 0o755 });
      s = await lstat(path);
    }
    if (!s?.isDirectory()) return undefined;
  }
  return path;
}

/** A regular file's text, opened without following a link; undefined when it is not one or is too large. */
async function readNoFollow(path: string, maxBytes: number): Promise<string | undefined> {
  const fd = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK).catch(
    () => undefined,
  );
  if (!fd) return undefined;
  try {
    const s = await fd.stat();
    if (!s.isFile() || s.size > maxBytes) return undefined;
    return (await fd.readFile()).toString('utf8');
  } finally {
    await fd.close();
  }
}

function defaultInodes(diskBytes: number): number {
  return Math.max(16_384, Math.floor(diskBytes / 8192));
}

function oneLine(text: string): string {
  let out = '';
  for (const ch of text) {
    const c = ch.codePointAt(0) ?? 0;
    out += c < 0x20 || c === 0x7f ? ' ' : ch;
  }
  return out.replace(/ {2,}/g, ' ').trim().slice(0, 300);
}

function duration(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${Math.round(ms / 100) / 10} s`;
}

// ------------------------------------------------------------------------------------------ option checks

function invalid(message: string): IsolationError {
  return new IsolationError('INVALID_INPUT', message);
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function checkEnv(env: unknown, what: string): void {
  if (env === undefined) return;
  if (typeof env !== 'object' || env === null || Array.isArray(env))
    throw invalid(`${what} must be an object of strings`);
  for (const [k, v] of Object.entries(env)) {
    if (!ENV_NAME.test(k)) throw invalid(`${what}: ${JSON.stringify(k).slice(0, 80)} is not a variable name`);
    if (typeof v !== 'string' || v.includes('\0'))
      throw invalid(`${what}: ${k} must be a string without NUL`);
  }
}

function checkAbsolute(path: unknown, what: string): string {
  if (typeof path !== 'string' || !path.startsWith('/') || path.includes('\0') || path.length > 4096) {
    throw invalid(`${what} must be an absolute path`);
  }
  if (posix.normalize(path) !== path || (path.length > 1 && path.endsWith('/'))) {
    throw invalid(
      `${what} must be a normalised path (no '.', '..', '//' or trailing '/'): ${path.slice(0, 200)}`,
    );
  }
  return path;
}

function checkInt(v: unknown, min: number, max: number, what: string): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalid(`${what} must be an integer from ${min} to ${max}`);
  }
}

function checkOptions(o: RootfsBuildOptions): RootfsBuildOptions {
  checkAbsolute(o.base, 'base');
  checkAbsolute(o.output, 'output');
  if (o.output === '/') throw invalid('output cannot be /');
  const l = o.limits;
  if (typeof l !== 'object' || l === null) throw invalid('limits are required');
  checkInt(l.memoryBytes, 64 * MiB, 2 ** 50, 'limits.memoryBytes');
  if (typeof l.cpus !== 'number' || !(l.cpus >= 0.01 && l.cpus <= 1024))
    throw invalid('limits.cpus must be from 0.01 to 1024');
  checkInt(l.pids, 8, 1_000_000, 'limits.pids');
  checkInt(l.diskBytes, 16 * MiB, 2 ** 50, 'limits.diskBytes');
  if (l.inodes !== undefined) checkInt(l.inodes, 1024, 2 ** 32 - 1, 'limits.inodes');
  if (l.tmpBytes !== undefined) checkInt(l.tmpBytes, MiB, l.memoryBytes, 'limits.tmpBytes');
  checkInt(l.timeoutMs, 1, 7 * 24 * 3_600_000, 'limits.timeoutMs');
  checkEnv(o.env, 'env');
  if (!Array.isArray(o.steps)) throw invalid('steps must be an array');
  for (const [i, step] of o.steps.entries()) {
    const what = `step ${i + 1}`;
    if (typeof step?.description !== 'string' || step.description.trim() === '') {
      throw invalid(`${what} needs a description`);
    }
    if (step.kind === 'run') {
      if (
        !Array.isArray(step.command) ||
        step.command.length === 0 ||
        step.command.some((a: unknown) => typeof a !== 'string' || a.includes('\0')) ||
        step.command[0] === ''
      ) {
        throw invalid(`${what}: command must be a non-empty array of strings without NUL`);
      }
      if (step.user !== 'root' && step.user !== 'studio')
        throw invalid(`${what}: user must be root or studio`);
      if (step.cwd !== undefined) checkAbsolute(step.cwd, `${what}: cwd`);
      checkEnv(step.env, `${what}: env`);
    } else if (step.kind === 'file') {
      if (checkAbsolute(step.path, `${what}: path`) === '/') throw invalid(`${what}: path cannot be /`);
      if (!(step.content instanceof Uint8Array)) throw invalid(`${what}: content must be bytes`);
      checkInt(step.mode, 0, 0o7777, `${what}: mode`);
      if (step.owner !== 'root' && step.owner !== 'studio')
        throw invalid(`${what}: owner must be root or studio`);
    } else {
      throw invalid(`${what}: kind must be run or file`);
    }
  }
  return o;
}

async function checkBase(base: string): Promise<void> {
  const s = await stat(join(base, 'usr')).catch(() => undefined);
  if (!s?.isDirectory()) {
    throw new IsolationError(
      'NOT_FOUND',
      `no root filesystem at ${base}: build the base image first (bash infra/image/build.sh)`,
    );
  }
}

async function checkOutputFree(output: string): Promise<void> {
  const parent = await stat(dirname(output)).catch(() => undefined);
  if (!parent?.isDirectory())
    throw invalid(`the output's parent directory ${dirname(output)} does not exist`);
  const s = await lstat(output).catch((error: NodeJS.ErrnoException) =>
    error.code === 'ENOENT' ? undefined : error,
  );
  if (s !== undefined)
    throw new IsolationError(
      'ALREADY_EXISTS',
      `the output ${output} already exists: build into a new directory`,
    );
}
