import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type BackendCapabilities,
  type ExecOptions,
  type ExecResult,
  type IsolationBackend,
  IsolationError,
  isIsolationError,
  type ListFilter,
  MANAGED_LABEL,
  newSandboxId,
  type ResourceLimits,
  SANDBOX_ID_PATTERN,
  type SandboxInfo,
  type SandboxSpec,
  type SandboxState,
  type SandboxStats,
  type SnapshotInfo,
  validateSandboxSpec,
} from '@studio/isolation';
import { AGENT_COMMAND, AGENT_DIR, AgentClient, AgentConnections, AgentSandbox } from '@studio/sandbox-agent';
import {
  LoopWorkspaces,
  SnapshotStore,
  type StoredSnapshot,
  WORKSPACE_READ_ONLY_FAILURE,
  type WorkspacePoolOptions,
} from '@studio/workspaces';
import { FIFO_IN, FIFO_OUT, makeFifos } from './agent-fifos.ts';
import { cpuUsageNanos, limitEvents, memoryUsage, removeCgroups, setCpuQuota } from './cgroups.ts';
import { mapRunscError } from './map-error.ts';
import { cpuQuotaOf, labelsOf, type OciSpec, ociSpec } from './oci-spec.ts';
import { bundleArg, Runsc, type RunscState, runscTooOld } from './runsc.ts';
import { mountTable, SandboxRoot, unmountAll } from './sandbox-root.ts';
import { type OciSeccomp, readOciSeccomp } from './seccomp-profile.ts';

/** Options for {@link GVisorBackend}. */
export interface GVisorBackendOptions {
  /** Where bundles, workspaces and runsc's state live. Required: packages never guess a host path. */
  dataDir: string;
  /**
   * Where snapshots are kept; default `<dataDir>/snapshots`. A directory on a filesystem every node of a cluster
   * mounts lets a session start on one node from a snapshot taken on another (workspace snapshots).
   */
  snapshotsDir?: string;
  /**
   * Image names a spec may use, each mapped to a root filesystem directory, or a function giving that map
   * (called once, on first use, and again after it threw: `available()` reports its error). Required: packages
   * never locate the repository's image build themselves; the app passes `STUDIO_SANDBOX_ROOTFS` (by default
   * what `infra/image/build.sh --print-rootfs` names).
   */
  images: Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>);
  /**
   * Images made after start (templates, issue 19): asked for an image `images` does not name, it returns that
   * image's root filesystem directory, or undefined when there is none.
   */
  resolveImage?: (image: string) => string | undefined;
  /** Written as the `studio.instance` label; reconciliation only touches sandboxes of this instance. */
  instanceId?: string;
  /** The runsc binary. Default `runsc` (on PATH). */
  runscPath?: string;
  /** runsc's `--root`. Default `<dataDir>/runsc`. */
  stateDir?: string;
  /** gVisor platform. Default `systrap` (faster than ptrace here; KVM hangs in nested VMs). */
  platform?: 'ptrace' | 'kvm' | 'systrap';
  /** Bytes of the data directory's disk no workspace may take; see `LoopWorkspacesOptions.headroomBytes`. */
  workspaceHeadroomBytes?: number;
  /**
   * Workspace images kept made ahead for creates of this disk size and inode count; see
   * `LoopWorkspacesOptions.pool`. The pool starts filling at the first list() or create().
   */
  workspacePool?: WorkspacePoolOptions;
  /** Host directory with the agent, mounted read-only at /opt/studio. */
  agentDir?: string;
  /** How long to wait for the agent's hello after a start. */
  agentTimeoutMs?: number;
  /**
   * Docker-format seccomp profile (JSON file), installed by runsc in every sandbox's first process (see
   * `seccomp-profile.ts`). Required: the app passes `infra/seccomp/studio.json` (`STUDIO_SECCOMP_PROFILE`),
   * the same profile as the Docker backend's.
   */
  seccompProfile: string;
  /** Per-sandbox ceilings on top of the policy's bounds (e.g. the API's `policy.sandbox`); see `validateSandboxSpec`. */
  limits?: Partial<ResourceLimits>;
  /** Host cgroup under which each sandbox gets `<cgroupParent>/<id>`. Default `studio-gvisor`. */
  cgroupParent?: string;
  /** Limit of one runsc call. Default 60 s. */
  runscTimeoutMs?: number;
  /**
   * Called after each create with when its steps ended (ms from the start; `runsc run` and `agent hello` are
   * durations): for profiling the create path.
   */
  onCreateTimings?: (id: string, timings: ReadonlyArray<readonly [string, number]>) => void;
  /** Run {@link GVisorBackend.reconcile} when the backend is constructed. Default true. */
  reconcileOnStart?: boolean;
}

/** What {@link GVisorBackend.reconcile} cleaned up. */
export interface ReconcileReport {
  /** Dead or bundle-less runsc containers deleted. */
  deleted: string[];
  /** Host processes of sandboxes runsc no longer knew (killed). */
  killed: number[];
  /** Half-created sandboxes and workspaces without a sandbox, removed. */
  removed: string[];
  /** Root overlays of sandboxes that are not running, unmounted. */
  unmounted: string[];
}

/** The image of a bundle written before sandboxes recorded theirs. */
const DEFAULT_IMAGE = 'studio-sandbox:latest';
const LABEL_SANDBOX = 'studio.sandbox';
const LABEL_INSTANCE = 'studio.instance';
const ANNOTATION_IMAGE = 'studio.image';
const ANNOTATION_CREATED = 'studio.created';
const ID_PATTERN = SANDBOX_ID_PATTERN;
/**
 * A suspended sandbox's saved state in its bundle: `runsc checkpoint` writes `checkpoint.making/`, renamed to
 * `checkpoint/` once complete, so a checkpoint that exists is whole.
 */
const CHECKPOINT = 'checkpoint';
const CHECKPOINT_MAKING = 'checkpoint.making';

/** A sandbox's failure, kept in its bundle so it survives an API restart. */
type Failure = NonNullable<SandboxInfo['failure']> & { limit?: 'memory' | 'pids' };

/**
 * The isolation contract on gVisor: every sandbox is one runsc container (its own kernel, the Sentry)
 * hardened per SECURITY.md §1 (see `oci-spec.ts`), with its workspace on a loop-mounted ext4 image for a
 * real quota, a private overlay root, and an agent inside started per connection with `runsc exec`.
 */
export class GVisorBackend implements IsolationBackend {
  readonly name = 'gvisor';
  readonly #o: GVisorBackendOptions;
  readonly #runsc: Runsc;
  readonly #workspaces: LoopWorkspaces;
  readonly #snapshots: SnapshotStore;
  #seccomp: Promise<OciSeccomp> | undefined;
  /** Sandboxes this backend has just started: their first agent connection needs no `runsc state`. */
  readonly #fresh = new Set<string>();
  readonly #sandboxesDir: string;
  readonly #locks = new Map<string, Promise<unknown>>();
  /** @internal One agent connection per sandbox, shared by every handle. */
  readonly agents = new AgentConnections();
  readonly #reconciled: Promise<unknown>;
  #images: Promise<Record<string, string>> | undefined;
  #closed = false;

  constructor(options: GVisorBackendOptions) {
    this.#o = options;
    this.#runsc = new Runsc({
      binary: options.runscPath ?? 'runsc',
      root: options.stateDir ?? join(options.dataDir, 'runsc'),
      platform: options.platform ?? 'systrap',
      timeoutMs: options.runscTimeoutMs ?? 60_000,
    });
    this.#workspaces = new LoopWorkspaces(options.dataDir, {
      ...(options.workspaceHeadroomBytes === undefined
        ? {}
        : { headroomBytes: options.workspaceHeadroomBytes }),
      ...(options.workspacePool ? { pool: options.workspacePool } : {}),
    });
    this.#sandboxesDir = join(options.dataDir, 'sandboxes');
    this.#snapshots = new SnapshotStore(options.dataDir, {
      root: options.snapshotsDir,
      owner: options.instanceId,
    });
    this.#reconciled =
      options.reconcileOnStart === false || process.getuid?.() !== 0
        ? Promise.resolve()
        : this.reconcile().catch((error: unknown) => error);
  }

  capabilities(): BackendCapabilities {
    return {
      pause: true,
      // runsc checkpoint/restore: memory, processes and open files; the workspace is copied beside it.
      checkpoint: true,
      snapshots: true,
      networkModes: ['none'],
      terminal: true,
      diskQuota: true,
      connect: true,
      listen: true,
    };
  }

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
        reason: 'gVisor sandboxes need root (runsc, cgroups, loop and overlay mounts): run Studio as root',
      };
    }
    if (!(await readFile('/proc/filesystems', 'utf8').catch(() => '')).includes('overlay')) {
      return { ok: false, reason: 'the kernel has no overlay filesystem: modprobe overlay' };
    }
    try {
      await this.#seccompFilter();
      for (const image of Object.keys(await this.#imageMap())) await this.#rootfsFor(image);
    } catch (error) {
      return { ok: false, reason: (error as Error).message };
    }
    return { ok: true };
  }

  async create(spec: SandboxSpec): Promise<GVisorSandbox> {
    this.#assertOpen();
    await this.#reconciled;
    validateSandboxSpec(spec, this.#o.limits);
    const t0 = performance.now();
    const snapshot =
      spec.fromSnapshot === undefined ? undefined : await this.#snapshots.get(spec.fromSnapshot);
    if (snapshot && snapshot.info.image !== spec.image) {
      throw new IsolationError(
        'INVALID_INPUT',
        `snapshot ${snapshot.info.id} was taken of image ${snapshot.info.image}, not ${spec.image}: create from it with image ${snapshot.info.image}`,
      );
    }
    const [rootfs, seccomp] = await Promise.all([this.#rootfsFor(spec.image), this.#seccompFilter()]);
    const id = spec.id ?? newSandboxId();
    // Checked before anything is made: the clean-up below removes everything named after `id`, and must never
    // reach a sandbox that a caller's reused id happens to name.
    if (spec.id !== undefined && (await this.#inUse(id))) {
      throw new IsolationError(
        'ALREADY_EXISTS',
        `sandbox id ${id} is in use: create without an id, or with a new one`,
      );
    }
    const labels: Record<string, string> = {
      ...(spec.labels ?? {}),
      [MANAGED_LABEL]: 'true',
      'studio.backend': this.name,
      [LABEL_SANDBOX]: id,
      'studio.workspace': 'loop',
      ...(this.#o.instanceId ? { [LABEL_INSTANCE]: this.#o.instanceId } : {}),
    };
    const timings: Array<[string, number]> = [];
    try {
      await this.#withLock(id, async () => {
        const bundle = this.bundleDir(id);
        await mkdir(this.#sandboxesDir, { recursive: true, mode: 0o700 });
        await mkdir(bundle, { mode: 0o700 });
        // In parallel, and all settled before a failure is thrown: the clean-up must not race a step still running.
        const step = <T>(name: string, p: Promise<T>) =>
          p.then((v) => {
            timings.push([name, performance.now() - t0]);
            return v;
          });
        const [workspace, root] = await allSettled([
          step(
            'workspace',
            snapshot
              ? this.#workspaces.createFrom(id, snapshot.workspaceImage)
              : this.#workspaces.create(id, spec.resources.diskBytes, spec.resources.inodes),
          ),
          step('root', this.#root(bundle, rootfs)),
          step('fifos', makeFifos(bundle)),
        ] as const);
        const t1 = performance.now();
        const config = ociSpec({
          rootfs: root,
          workspace,
          agentDir: this.#o.agentDir ?? AGENT_DIR,
          command: AGENT_COMMAND,
          seccomp,
          resources: spec.resources,
          cgroupsPath: this.#cgroupsPath(id),
          labels,
        });
        config.annotations[ANNOTATION_IMAGE] = spec.image;
        config.annotations[ANNOTATION_CREATED] = new Date().toISOString();
        // config.json last: a bundle without it is a create that never finished (reconcile removes it).
        await writeJson(join(bundle, 'config.json'), config);
        await this.#run(id, config, snapshot);
        timings.push(['runsc run', performance.now() - t1]);
      });
      const t2 = performance.now();
      const sandbox = new GVisorSandbox(this, id);
      await sandbox.ready();
      timings.push(['agent hello', performance.now() - t2]);
      this.#o.onCreateTimings?.(id, timings);
      return sandbox;
    } catch (error) {
      await this.destroy(id).catch(() => undefined);
      throw mapRunscError(error, `sandbox from image ${spec.image}`);
    }
  }

  async #inUse(id: string): Promise<boolean> {
    if (this.#locks.has(id) || (await this.#workspaces.exists(id))) return true;
    if (
      await stat(this.bundleDir(id)).then(
        () => true,
        () => false,
      )
    )
      return true;
    return (await this.#runsc.list()).some((c) => c.id === id);
  }

  async get(id: string): Promise<GVisorSandbox> {
    await this.#reconciled;
    await this.readBundle(id);
    return new GVisorSandbox(this, id);
  }

  async list(filter: ListFilter = {}): Promise<SandboxInfo[]> {
    await this.#reconciled;
    const ids = (await readdir(this.#sandboxesDir).catch(() => [] as string[])).filter((n) =>
      ID_PATTERN.test(n),
    );
    // list() is what the API's reconciliation polls: the place to repair images a host fstrim made sparse.
    await this.#workspaces.fillHoles();
    void this.#workspaces.fillPool();
    const states = new Map((await this.#runsc.list()).map((s) => [s.id, s]));
    const out: SandboxInfo[] = [];
    for (const id of ids) {
      const config = await this.readBundle(id).catch(() => undefined);
      if (config === undefined) continue;
      const labels = labelsOf(config.annotations);
      if (labels[MANAGED_LABEL] !== 'true' || labels['studio.backend'] !== this.name) continue;
      if (!Object.entries(filter.labels ?? {}).every(([k, v]) => labels[k] === v)) continue;
      const info = await this.#info(id, config, states.get(id)).catch((error: unknown) => {
        if (isIsolationError(error, 'NOT_FOUND')) return undefined; // destroyed meanwhile
        throw error;
      });
      if (info) out.push(info);
    }
    return out;
  }

  async destroy(id: string): Promise<void> {
    // Idempotent: an id this backend could never have made names nothing to remove.
    if (!ID_PATTERN.test(id)) return;
    await this.#withLock(id, async () => {
      await this.agents.drop(id);
      this.#fresh.delete(id);
      const bundle = this.bundleDir(id);
      try {
        await this.#runsc.run(['delete', '--force', id], `sandbox ${id}`);
      } catch (error) {
        if (!isIsolationError(error, 'NOT_FOUND')) throw error;
      }
      await this.#killStray(id);
      await removeCgroups(this.#cgroupsPath(id));
      await unmountAll(bundle);
      await this.#workspaces.destroy(id);
      await rm(bundle, { recursive: true, force: true });
      await this.#runsc.removeState(id);
    });
  }

  listSnapshots(): Promise<SnapshotInfo[]> {
    return this.#snapshots.list();
  }

  deleteSnapshot(snapshotId: string): Promise<void> {
    return this.#snapshots.delete(snapshotId);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.agents.dropAll();
    await this.#workspaces.close();
  }

  /**
   * Cleans what a crash left behind, for this instance only (all of `stateDir` when no instanceId):
   * dead runsc containers are deleted (their failure recorded first), containers without a bundle or
   * left `created` by an interrupted create or start are deleted, runsc-sandbox/runsc-gofer processes of this root that runsc no longer knows are killed,
   * half-created bundles and workspaces without a sandbox are removed, root overlays of sandboxes that
   * are not running are unmounted, and guest layers no sandbox uses are pruned. Runs at construction.
   */
  async reconcile(): Promise<ReconcileReport> {
    const report: ReconcileReport = { deleted: [], killed: [], removed: [], unmounted: [] };
    await this.#snapshots.clean();
    await this.#workspaces.thawAll();
    const containers = await this.#runsc.list();
    const known = new Set(containers.map((c) => c.id));
    for (const c of containers) {
      if (!ID_PATTERN.test(c.id) || this.#locks.has(c.id)) continue;
      const labels = labelsOf(c.annotations);
      if (!this.#mine(labels)) continue;
      const config = await this.readBundle(c.id).catch(() => undefined);
      // `created`: a create or start that a crash interrupted; the sandbox is then simply stopped.
      if (config === undefined || c.status === 'stopped' || c.status === 'created') {
        await this.#withLock(c.id, async () => {
          if (config !== undefined && c.status === 'stopped') await this.#recordFailure(c.id, config);
          await this.#runsc.run(['delete', '--force', c.id], `sandbox ${c.id}`).catch(() => undefined);
        });
        report.deleted.push(c.id);
      }
    }
    for (const pid of await this.#strayProcesses(known)) {
      try {
        process.kill(pid, 'SIGKILL');
        report.killed.push(pid);
      } catch {
        // already gone
      }
    }
    const running = new Set(
      containers.filter((c) => c.status === 'running' || c.status === 'paused').map((c) => c.id),
    );
    for (const id of (await readdir(this.#sandboxesDir).catch(() => [] as string[])).filter((n) =>
      ID_PATTERN.test(n),
    )) {
      if (this.#locks.has(id)) continue;
      const config = await this.readBundle(id).catch(() => undefined);
      await rm(join(this.bundleDir(id), CHECKPOINT_MAKING), { recursive: true, force: true });
      if (config === undefined) {
        await this.destroy(id);
        report.removed.push(id);
      } else if (this.#mine(labelsOf(config.annotations)) && !running.has(id)) {
        const root = new SandboxRoot(this.bundleDir(id));
        if ((await mountTable()).some((m) => m.point === root.mountPoint)) {
          await root.unmount();
          report.unmounted.push(id);
        }
      }
    }
    const bundles = new Set(await readdir(this.#sandboxesDir).catch(() => [] as string[]));
    for (const name of await readdir(join(this.#o.dataDir, 'workspaces')).catch(() => [] as string[])) {
      const id = name.replace(/\.img$/, '');
      if (ID_PATTERN.test(id) && !bundles.has(id) && !this.#locks.has(id) && !report.removed.includes(id)) {
        await this.#workspaces.destroy(id);
        report.removed.push(id);
      }
    }
    // Guest layers (the seccomp wrapper and statx shim of runsc 20221219) are no longer made: remove old ones.
    const mounts = await mountTable();
    if (!mounts.some((m) => m.options.includes(join(this.#o.dataDir, 'guest')))) {
      await rm(join(this.#o.dataDir, 'guest'), { recursive: true, force: true });
    }
    return report;
  }

  // ------------------------------------------------------------------------ internals used by GVisorSandbox

  /** @internal */
  bundleDir(id: string): string {
    return join(this.#sandboxesDir, id);
  }

  /** @internal The sandbox's OCI config; NOT_FOUND when it has none. */
  async readBundle(id: string): Promise<OciSpec> {
    assertId(id);
    try {
      return JSON.parse(await readFile(join(this.bundleDir(id), 'config.json'), 'utf8')) as OciSpec;
    } catch (error) {
      throw new IsolationError('NOT_FOUND', `sandbox ${id} not found`, { cause: error });
    }
  }

  /** @internal */
  async info(id: string): Promise<SandboxInfo> {
    const config = await this.readBundle(id);
    return this.#info(id, config, await this.#runsc.state(id));
  }

  /** @internal */
  async stats(id: string): Promise<SandboxStats> {
    const config = await this.readBundle(id);
    const state = await this.#runsc.state(id);
    if (state?.status !== 'running' && state?.status !== 'paused') {
      throw new IsolationError('INVALID_STATE', `sandbox ${id} is stopped: start it first`);
    }
    const [raw, host, cpu, disk] = await Promise.all([
      this.#runsc.stats(id),
      memoryUsage(config.linux.cgroupsPath),
      cpuUsageNanos(config.linux.cgroupsPath),
      this.#workspaces.usage(id),
    ]);
    const limit = config.linux.resources.memory.limit;
    return {
      memoryBytes: Math.min(limit, host ?? raw.memory?.usage?.usage ?? 0),
      memoryLimitBytes: limit,
      cpuNanos: cpu ?? raw.cpu?.usage?.total ?? 0,
      pids: raw.pids?.current ?? 0,
      diskUsedBytes: disk?.used ?? null,
      diskLimitBytes: disk?.limit ?? null,
    };
  }

  /** @internal Stops every process; keeps the bundle and the workspace. */
  async stop(id: string): Promise<void> {
    await this.#withLock(id, async () => {
      await this.agents.drop(id);
      this.#fresh.delete(id);
      const config = await this.readBundle(id);
      const state = await this.#runsc.state(id);
      if (state?.status === 'stopped') await this.#recordFailure(id, config);
      if (state !== undefined) {
        try {
          await this.#runsc.run(['delete', '--force', id], `sandbox ${id}`);
        } catch (error) {
          if (!isIsolationError(error, 'NOT_FOUND')) throw error;
        }
      }
      await new SandboxRoot(this.bundleDir(id)).unmount();
      // A suspended sandbox stopped: its saved memory goes, the next start is cold.
      await rm(join(this.bundleDir(id), CHECKPOINT), { recursive: true, force: true });
    });
  }

  /** @internal Starts a stopped sandbox again from its bundle, with the same workspace. */
  async start(id: string): Promise<void> {
    await this.#withLock(id, async () => {
      const config = await this.readBundle(id);
      const state = await this.#runsc.state(id);
      if (state?.status === 'running') return;
      if (state?.status === 'paused') {
        throw new IsolationError('INVALID_STATE', `sandbox ${id} is paused: resume it instead`);
      }
      if (state !== undefined) {
        // A sandbox that died (a limit, its init killed): note why, then clear runsc's record of it.
        // Never `create` over an existing id: runsc then drops the old container's state.
        if (state.status === 'stopped') await this.#recordFailure(id, config);
        await this.#runsc.run(['delete', '--force', id], `sandbox ${id}`);
      }
      await this.agents.drop(id);
      const image = config.annotations[ANNOTATION_IMAGE] ?? DEFAULT_IMAGE;
      await this.#workspaces.mount(id);
      const root = await this.#root(this.bundleDir(id), await this.#rootfsFor(image));
      if (config.root.path !== root) {
        // The image was rebuilt elsewhere (its rootfs path names its recipe's hash) or the overlay is needed now.
        config.root.path = root;
        await writeJson(join(this.bundleDir(id), 'config.json'), config);
      }
      await makeFifos(this.bundleDir(id));
      await removeCgroups(config.linux.cgroupsPath);
      const checkpoint = join(this.bundleDir(id), CHECKPOINT);
      if (await isDir(checkpoint)) {
        await this.#restore(id, config, checkpoint);
      } else {
        await this.#run(id, config);
      }
      await rm(join(this.bundleDir(id), 'failure.json'), { force: true });
    });
  }

  /**
   * Brings a suspended sandbox back from its checkpoint. The checkpoint is removed either way: after a restore
   * the sandbox runs from memory again, and one that cannot be restored never will be, so the next start is cold.
   */
  async #restore(id: string, config: OciSpec, checkpoint: string): Promise<void> {
    try {
      await this.#run(id, config, { memoryDir: checkpoint });
    } catch (error) {
      await this.#runsc.run(['delete', '--force', id], `sandbox ${id}`).catch(() => undefined);
      await this.#killStray(id);
      throw new IsolationError(
        'RESTORE_FAILED',
        // runsc's own words stay in `cause` (for the log): they name host paths.
        `sandbox ${id}: its saved memory could not be restored; its workspace is intact: start it again to start it afresh`,
        { cause: error },
      );
    } finally {
      await rm(checkpoint, { recursive: true, force: true });
    }
  }

  /**
   * @internal Checkpoints the sandbox (memory, processes, open files) into its bundle and releases it: the runsc
   * sandbox exits, its root overlay and cgroup go; the workspace stays. A stopped or already suspended sandbox is
   * left as it is.
   */
  async suspend(id: string): Promise<{ memory: boolean }> {
    return this.#withLock(id, async () => {
      const config = await this.readBundle(id);
      const bundle = this.bundleDir(id);
      const state = await this.#runsc.state(id);
      if (state === undefined || state.status === 'stopped') {
        return { memory: await isDir(join(bundle, CHECKPOINT)) };
      }
      if (state.status !== 'running' && state.status !== 'paused') {
        throw new IsolationError('INVALID_STATE', `sandbox ${id} is ${state.status}: wait until it runs`);
      }
      await this.agents.drop(id);
      this.#fresh.delete(id);
      const making = join(bundle, CHECKPOINT_MAKING);
      await rm(making, { recursive: true, force: true });
      await mkdir(making, { mode: 0o700 });
      try {
        await this.#runsc.run(['checkpoint', '--image-path', making, id], `sandbox ${id}`);
      } catch (error) {
        await rm(making, { recursive: true, force: true });
        throw error;
      }
      await rename(making, join(bundle, CHECKPOINT));
      // The checkpoint ends the sandbox; what runsc keeps of it (its record, a gofer) goes now.
      await this.#runsc.run(['delete', '--force', id], `sandbox ${id}`).catch(() => undefined);
      await this.#killStray(id);
      await removeCgroups(config.linux.cgroupsPath);
      await new SandboxRoot(bundle).unmount();
      return { memory: true };
    });
  }

  /**
   * @internal Saves a copy of the running sandbox: paused for the capture (a checkpoint that leaves it in place,
   * then its workspace image copied while nothing writes), then resumed.
   */
  async snapshot(id: string, snapshotId: string): Promise<SnapshotInfo> {
    return this.#withLock(id, async () => {
      const config = await this.readBundle(id);
      const state = await this.#runsc.state(id);
      if (state?.status !== 'running' && state?.status !== 'paused') {
        throw new IsolationError(
          'INVALID_STATE',
          `sandbox ${id} is ${state?.status ?? 'stopped'}: snapshots are taken of running sandboxes; start it first`,
        );
      }
      const draft = await this.#snapshots.begin(snapshotId);
      const frozen = state.status === 'paused';
      try {
        if (!frozen) await this.#runsc.run(['pause', id], `sandbox ${id}`);
        try {
          await this.#runsc.run(
            ['checkpoint', '--leave-running', '--image-path', draft.memoryDir, id],
            `sandbox ${id}`,
          );
          await this.#workspaces.copyOut(id, draft.workspaceImage);
        } finally {
          if (!frozen) await this.#runsc.run(['resume', id], `sandbox ${id}`);
        }
        const shape = await this.#workspaces.shape(id);
        return await draft.commit({
          sandboxId: id,
          image: config.annotations[ANNOTATION_IMAGE] ?? DEFAULT_IMAGE,
          memory: true,
          diskBytes: shape.diskBytes,
          inodes: shape.inodes,
        });
      } catch (error) {
        await draft.abort();
        throw error;
      }
    });
  }

  /** @internal */
  async pause(id: string): Promise<void> {
    await this.#withLock(id, async () => {
      await this.readBundle(id);
      await this.#runsc.run(['pause', id], `sandbox ${id}`);
    });
  }

  /** @internal */
  async resume(id: string): Promise<void> {
    await this.#withLock(id, async () => {
      await this.readBundle(id);
      await this.#runsc.run(['resume', id], `sandbox ${id}`);
    });
  }

  /** @internal Opens a new agent connection: the sandbox's first process's stdio, through its FIFOs. */
  connectAgent(id: string): Promise<AgentClient> {
    return this.#connect(id);
  }

  /**
   * @internal Turns "the agent went away" into the cause when the runtime knows it: the sandbox ran out
   * of memory or processes (gVisor's kernel is one host process under the limits, so it dies whole).
   */
  async explain(id: string, error: unknown): Promise<unknown> {
    if (!isIsolationError(error, 'UNAVAILABLE')) return error;
    const config = await this.readBundle(id).catch(() => undefined);
    if (config === undefined)
      return new IsolationError('NOT_FOUND', `sandbox ${id} not found`, { cause: error });
    // Suspended (or being suspended) under the caller: the agent went away because of it, not a failure.
    const bundle = this.bundleDir(id);
    if ((await isDir(join(bundle, CHECKPOINT))) || (await isDir(join(bundle, CHECKPOINT_MAKING)))) {
      return new IsolationError('INVALID_STATE', `sandbox ${id} was suspended: start it to carry on`, {
        cause: error,
      });
    }
    // The agent's pipe closes a moment before runsc sees the sandbox process gone.
    let state: RunscState | undefined;
    for (let i = 0; i < 20; i++) {
      state = await this.#runsc.state(id).catch(() => undefined);
      if (state?.status !== 'running') break;
      await sleep(150);
    }
    if (state?.status === 'running' || state?.status === 'paused') return error;
    const failure =
      state?.status === 'stopped'
        ? await this.#recordFailure(id, config)
        : await readFailure(this.bundleDir(id));
    if (failure?.code === 'RESOURCE_LIMIT') {
      const what = failure.limit === 'pids' ? 'processes' : 'memory';
      return new IsolationError(
        'RESOURCE_LIMIT',
        `sandbox ${id} ran out of ${what} and stopped; start it again`,
        {
          cause: error,
          details: { limit: failure.limit ?? 'memory' },
        },
      );
    }
    return new IsolationError('INVALID_STATE', `sandbox ${id} stopped; start it again`, { cause: error });
  }

  /** @internal The host cgroup's count of OOM kills in this sandbox (undefined when unreadable). */
  async oomKills(id: string): Promise<number | undefined> {
    return (await limitEvents(this.#cgroupsPath(id)))?.oomKills;
  }

  /** @internal */
  async dropAgent(id: string): Promise<void> {
    await this.agents.drop(id);
  }

  /** @internal */
  get agentTimeoutMs(): number {
    return this.#o.agentTimeoutMs ?? 30_000;
  }

  // ---------------------------------------------------------------------------------------------- private

  async #connect(id: string): Promise<AgentClient> {
    this.#assertOpen();
    await this.readBundle(id);
    // Right after a start runsc's exit status already said the sandbox runs: no `runsc state` on that path.
    if (!this.#fresh.delete(id)) {
      const state = await this.#runsc.state(id);
      if (state?.status !== 'running') {
        const status = state?.status === 'paused' ? 'paused' : 'stopped';
        throw new IsolationError(
          'INVALID_STATE',
          `sandbox ${id} is ${status}: ${status === 'paused' ? 'resume' : 'start'} it first`,
        );
      }
    }
    const bundle = this.bundleDir(id);
    let input: Socket;
    let output: Socket;
    try {
      // Non-blocking: the FIFOs are served by libuv like sockets, never by a thread of the pool. The sandbox
      // holds both ends open (O_RDWR), so a host that goes away leaves the agent running for the next one,
      // as Docker's attach does; opening the write side fails with ENXIO once the sandbox is gone.
      // Opening a FIFO with O_NONBLOCK never waits, so the synchronous calls cost no more than a stat.
      const out = openSync(join(bundle, FIFO_OUT), fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
      let inp: number;
      try {
        inp = openSync(join(bundle, FIFO_IN), fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
      } catch (error) {
        closeSync(out);
        throw error;
      }
      input = new Socket({ fd: out, readable: true, writable: false });
      output = new Socket({ fd: inp, readable: false, writable: true });
    } catch (error) {
      throw new IsolationError('UNAVAILABLE', `sandbox ${id}: its agent's channel cannot be opened`, {
        cause: error,
      });
    }
    input.on('error', () => input.destroy());
    output.on('error', () => output.destroy());
    const client = new AgentClient({ input, output });
    client.closed.then(() => {
      input.destroy();
      output.destroy();
    });
    try {
      await client.hello(this.agentTimeoutMs);
    } catch (error) {
      await client.close().catch(() => undefined);
      input.destroy();
      output.destroy();
      throw error;
    }
    return client;
  }

  /**
   * The root runsc gets. runsc's gofer creates missing mount points, as root, in the root it is given: when
   * the image has every mount point of the spec (Studio's image does), the image's rootfs itself, read-only,
   * and nothing is written there; otherwise a private overlay over it (see {@link SandboxRoot}), so the
   * shared image stays untouched.
   */
  async #root(bundle: string, rootfs: string): Promise<string> {
    const points = await Promise.all(
      MOUNT_POINTS.map((p) =>
        stat(join(rootfs, p)).then(
          (s) => s.isDirectory(),
          () => false,
        ),
      ),
    );
    if (points.every(Boolean)) return rootfs;
    return new SandboxRoot(bundle).mount(rootfs);
  }

  /** Starts the bundle's container with the agent's FIFOs as its first process's stdin and stdout. */
  /** Starts the bundle's sandbox, then gives its cgroup the CPU quota (see `CPU_QUOTA_ANNOTATION`). */
  async #run(id: string, config: OciSpec, from?: Pick<StoredSnapshot, 'memoryDir'>): Promise<void> {
    const bundle = this.bundleDir(id);
    // O_RDWR: opening a FIFO that way never blocks, and the sandbox keeps both ends, so the agent never sees
    // an end of input when a host connection closes.
    const inp = openSync(join(bundle, FIFO_IN), fsConstants.O_RDWR);
    let out: number;
    try {
      out = openSync(join(bundle, FIFO_OUT), fsConstants.O_RDWR);
    } catch (error) {
      closeSync(inp);
      throw error;
    }
    try {
      await this.#runsc.runDetached(
        bundle,
        id,
        inp,
        out,
        from?.memoryDir === undefined ? {} : { restoreFrom: from.memoryDir },
      );
      const cpu = cpuQuotaOf(config);
      if (cpu) {
        await setCpuQuota(config.linux.cgroupsPath, cpu.quota, cpu.period).catch(async (error: unknown) => {
          // Never left running without its quota, whoever called.
          await this.#runsc.run(['delete', '--force', id], `sandbox ${id}`).catch(() => undefined);
          throw new IsolationError(
            'INTERNAL',
            `could not set the CPU quota of sandbox ${id} (cgroup ${config.linux.cgroupsPath}): ${(error as Error).message}; check that /sys/fs/cgroup is writable`,
            { cause: error },
          );
        });
      }
      this.#fresh.add(id);
    } finally {
      closeSync(inp);
      closeSync(out);
    }
  }

  /** The seccomp profile as OCI `linux.seccomp`, read once (again after it failed). */
  #seccompFilter(): Promise<OciSeccomp> {
    this.#seccomp ??= readOciSeccomp(this.#o.seccompProfile);
    this.#seccomp.catch(() => {
      this.#seccomp = undefined;
    });
    return this.#seccomp;
  }

  async #info(id: string, config: OciSpec, state: RunscState | undefined): Promise<SandboxInfo> {
    let failure: Failure | undefined;
    if (state?.status === 'stopped') {
      failure = await this.#withLock(id, () => this.#recordFailure(id, config));
    } else if (state === undefined) {
      failure = await readFailure(this.bundleDir(id));
    }
    const annotations = config.annotations ?? {};
    const suspended = state === undefined && (await isDir(join(this.bundleDir(id), CHECKPOINT)));
    const readOnly = (await this.#workspaces.readOnlyIds()).has(id);
    return {
      id,
      backend: this.name,
      image: annotations[ANNOTATION_IMAGE] ?? DEFAULT_IMAGE,
      labels: labelsOf(annotations),
      createdAt: new Date(annotations[ANNOTATION_CREATED] ?? 0),
      ...(readOnly
        ? { state: 'failed' as const, failure: WORKSPACE_READ_ONLY_FAILURE }
        : {
            state: suspended ? ('suspended' as const) : stateOf(state),
            ...(failure ? { failure: { code: failure.code, reason: failure.reason } } : {}),
          }),
    };
  }

  /**
   * For a sandbox runsc reports dead: reads why from its cgroup (before anything deletes it) and keeps
   * the answer in the bundle. Idempotent; returns the recorded failure.
   */
  async #recordFailure(id: string, config: OciSpec): Promise<Failure | undefined> {
    const known = await readFailure(this.bundleDir(id));
    const events = await limitEvents(config.linux.cgroupsPath);
    let failure: Failure | undefined = known;
    if (events && events.oomKills > 0) {
      failure = {
        code: 'RESOURCE_LIMIT',
        limit: 'memory',
        reason: `the sandbox ran out of memory (limit ${config.linux.resources.memory.limit} bytes) and its kernel was killed`,
      };
    } else if (events && events.pidsRefused > 0) {
      failure = {
        code: 'RESOURCE_LIMIT',
        limit: 'pids',
        reason: 'the sandbox ran out of processes and its kernel could not continue',
      };
    } else if (failure === undefined && events !== undefined) {
      failure = { code: 'INTERNAL', reason: "the sandbox's init process exited" };
    }
    if (failure && JSON.stringify(failure) !== JSON.stringify(known)) {
      await writeJson(join(this.bundleDir(id), 'failure.json'), failure).catch(() => undefined);
    }
    return failure;
  }

  /** Host processes of `id` (sandbox or gofer) that outlived runsc's record of it. */
  async #killStray(id: string): Promise<void> {
    for (const pid of await this.#strayProcesses(new Set(), id)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  /**
   * runsc-sandbox and runsc-gofer processes started with this backend's `--root` whose container is not
   * in `known` (or, with `only`, that belong to that container). Found by their command lines: runsc
   * passes `--root=<dir>`, the bundle path and (for the sandbox) the container id.
   */
  async #strayProcesses(known: ReadonlySet<string>, only?: string): Promise<number[]> {
    const pids: number[] = [];
    for (const { pid, argv } of await this.#runsc.hostProcesses()) {
      const bundle = bundleArg(argv);
      const id =
        bundle?.startsWith(`${this.#sandboxesDir}/`) === true
          ? bundle.slice(this.#sandboxesDir.length + 1).replace(/\/$/, '')
          : argv.filter(Boolean).at(-1);
      if (id === undefined || !ID_PATTERN.test(id)) continue;
      if (only !== undefined ? id === only : !known.has(id) && !this.#locks.has(id)) pids.push(pid);
    }
    return pids;
  }

  #mine(labels: Record<string, string>): boolean {
    return this.#o.instanceId === undefined || labels[LABEL_INSTANCE] === this.#o.instanceId;
  }

  #cgroupsPath(id: string): string {
    return `/${this.#o.cgroupParent ?? 'studio-gvisor'}/${id}`;
  }

  #imageMap(): Promise<Record<string, string>> {
    const images = this.#o.images;
    this.#images ??= typeof images === 'function' ? (async () => images())() : Promise.resolve(images);
    return this.#images.catch((error: unknown) => {
      this.#images = undefined;
      throw error;
    });
  }

  async #rootfsFor(image: string): Promise<string> {
    const images = await this.#imageMap();
    const rootfs = Object.hasOwn(images, image) ? images[image] : this.#o.resolveImage?.(image);
    if (rootfs === undefined) {
      throw new IsolationError(
        'NOT_FOUND',
        `image ${image} is not known to the gVisor backend (known: ${Object.keys(images).join(', ')})`,
      );
    }
    const s = await stat(join(rootfs, 'usr')).catch(() => undefined);
    if (!s?.isDirectory()) {
      throw new IsolationError(
        'NOT_FOUND',
        `image ${image}: no root filesystem at ${rootfs}; build it with bash infra/image/build.sh`,
      );
    }
    return rootfs;
  }

  /** Runs `fn` alone for this sandbox id (lifecycle operations never interleave in this process). */
  async #withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(id) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.#locks.set(id, tail);
    tail.then(() => {
      if (this.#locks.get(id) === tail) this.#locks.delete(id);
    });
    return run;
  }

  #assertOpen(): void {
    if (this.#closed) throw new IsolationError('INVALID_STATE', 'the gVisor backend is closed');
  }
}

/** A handle to one gVisor sandbox. Cheap to create; the agent connection is opened on first use. */
export class GVisorSandbox extends AgentSandbox {
  readonly backend = 'gvisor';
  readonly id: string;
  readonly #backend: GVisorBackend;

  constructor(backend: GVisorBackend, id: string) {
    super();
    this.#backend = backend;
    this.id = id;
  }

  /** Waits until the agent answers. */
  async ready(): Promise<void> {
    await this.agent();
  }

  /**
   * Under systrap each guest address space lives in a host stub process, so the host's OOM killer ends the
   * process that outgrew the sandbox's memory (its stub) and the sandbox keeps running; gVisor reports that
   * process as exited with status 1. The host cgroup counts the kill: a failed exec during which that count
   * rose is reported `oomKilled` (another process of the same sandbox may have been the victim: either
   * way the sandbox hit its memory limit while the command ran).
   */
  override async exec(command: readonly string[], options: ExecOptions): Promise<ExecResult> {
    const before = await this.#backend.oomKills(this.id);
    const result = await super.exec(command, options);
    if (result.oomKilled || result.timedOut || result.exitCode === 0 || before === undefined) return result;
    const after = await this.#backend.oomKills(this.id);
    return after !== undefined && after > before ? { ...result, oomKilled: true } : result;
  }

  protected get connections(): AgentConnections {
    return this.#backend.agents;
  }

  protected connectAgent(): Promise<AgentClient> {
    return this.#backend.connectAgent(this.id);
  }

  protected override explainFailure(error: unknown): Promise<unknown> {
    return this.#backend.explain(this.id, error);
  }

  info(): Promise<SandboxInfo> {
    return this.#backend.info(this.id);
  }

  stats(): Promise<SandboxStats> {
    return this.#backend.stats(this.id);
  }

  async stop(): Promise<void> {
    await this.disconnectAgent();
    await this.#backend.stop(this.id);
  }

  async start(): Promise<void> {
    await this.disconnectAgent();
    await this.#backend.start(this.id);
    await this.agent();
  }

  pause(): Promise<void> {
    return this.#backend.pause(this.id);
  }

  resume(): Promise<void> {
    return this.#backend.resume(this.id);
  }

  async suspend(): Promise<{ memory: boolean }> {
    await this.disconnectAgent();
    return this.#backend.suspend(this.id);
  }

  snapshot(snapshotId: string): Promise<SnapshotInfo> {
    return this.#backend.snapshot(this.id, snapshotId);
  }

  async destroy(): Promise<void> {
    await this.disconnectAgent();
    await this.#backend.destroy(this.id);
  }
}

/** Every mount point of `ociSpec`: a root that has them all needs no overlay. */
const MOUNT_POINTS = ['proc', 'dev', 'sys', 'tmp', 'workspace', 'opt/studio'];

/** Promise.all that waits for every step before it rejects with the first failure. */
async function allSettled<T extends readonly unknown[]>(
  steps: T,
): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const results = await Promise.allSettled(steps);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as {
    -readonly [K in keyof T]: Awaited<T[K]>;
  };
}

function stateOf(state: RunscState | undefined): SandboxState {
  switch (state?.status) {
    case 'running':
      return 'running';
    case 'paused':
      return 'paused';
    case 'created':
      return 'creating';
    default:
      return 'stopped';
  }
}

async function isDir(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

async function readFailure(bundle: string): Promise<Failure | undefined> {
  try {
    const f = JSON.parse(await readFile(join(bundle, 'failure.json'), 'utf8')) as Failure;
    return f.code === 'RESOURCE_LIMIT' || f.code === 'INTERNAL' ? f : undefined;
  } catch {
    return undefined;
  }
}

async function writeJson(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, path);
}

function assertId(id: string): void {
  if (!ID_PATTERN.test(id))
    throw new IsolationError('NOT_FOUND', `sandbox ${JSON.stringify(id).slice(0, 64)} not found`);
}
