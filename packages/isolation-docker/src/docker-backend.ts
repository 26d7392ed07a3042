import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type BackendCapabilities,
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
  SNAPSHOT_ID_PATTERN,
  type SnapshotInfo,
  validateSandboxSpec,
} from '@studio/isolation';
import { AGENT_COMMAND, AGENT_DIR, AgentClient, AgentConnections, AgentSandbox } from '@studio/sandbox-agent';
import {
  LoopWorkspaces,
  SnapshotStore,
  type StoredSnapshot,
  WORKSPACE_READ_ONLY_FAILURE,
  type WorkspaceMode,
  type WorkspacePoolOptions,
} from '@studio/workspaces';
import Docker from 'dockerode';
import { containerConfig } from './hardening.ts';
import { mapDockerError } from './map-error.ts';

/** Options for {@link DockerBackend}. */
export interface DockerBackendOptions {
  /** Where workspace images live. Required: packages never guess a host path. */
  dataDir: string;
  /**
   * Where snapshots are kept; default `<dataDir>/snapshots`. A directory on a filesystem every node of a cluster
   * mounts lets a session start on one node from a snapshot taken on another (workspace snapshots).
   */
  snapshotsDir?: string;
  /** A dockerode client; default: the local socket. */
  docker?: Docker;
  /** Written as the `studio.instance` label so one API finds what it created. */
  instanceId?: string;
  /**
   * Seccomp profile (a Docker-format JSON file) applied to every sandbox. Required: packages never read the
   * repository's infra/ themselves; the app passes `infra/seccomp/studio.json` (`STUDIO_SECCOMP_PROFILE`).
   */
  seccompProfile: string;
  /** Per-sandbox ceilings on top of the policy's bounds (e.g. the API's `policy.sandbox`); see `validateSandboxSpec`. */
  limits?: Partial<ResourceLimits>;
  /** AppArmor profile name, applied only when the host kernel has AppArmor. */
  apparmorProfile?: string;
  /** `loop` (hard quota, needs root) or `volume` (no quota). Default: `loop` when running as root. */
  workspaceMode?: WorkspaceMode;
  /** Bytes of the data directory's disk no workspace may take; see `LoopWorkspacesOptions.headroomBytes`. */
  workspaceHeadroomBytes?: number;
  /**
   * Workspace images kept made ahead for creates of this disk size and inode count (loop mode); see
   * `LoopWorkspacesOptions.pool`. The pool starts filling at the first list() or create().
   */
  workspacePool?: WorkspacePoolOptions;
  /** Host directory with the agent, mounted read-only at /opt/studio. */
  agentDir?: string;
  /** How long to wait for the agent's hello after a start. */
  agentTimeoutMs?: number;
}

const NAME_PREFIX = 'studio-';
const LABEL_SANDBOX = 'studio.sandbox';
const LABEL_WORKSPACE = 'studio.workspace';

/**
 * The isolation contract on a Docker daemon. Every sandbox is one container hardened per
 * SECURITY.md §1 (see `hardening.ts`), with its workspace on a loop-mounted ext4 image for a real
 * quota, and an agent inside spoken to over the container's attached stdio.
 */
export class DockerBackend implements IsolationBackend {
  readonly name = 'docker';
  readonly #docker: Docker;
  readonly #options: DockerBackendOptions;
  readonly #workspaces: LoopWorkspaces;
  readonly #snapshots: SnapshotStore;
  readonly #mode: WorkspaceMode;
  // Suspended sandboxes: an empty file `<dataDir>/suspended/<id>` each, so the state survives a restart of the API.
  readonly #suspendedDir: string;
  // Suspends and snapshots of one sandbox run one at a time (a snapshot pauses and unpauses its container).
  readonly #serial = new Map<string, Promise<unknown>>();
  /** @internal One agent connection per sandbox, shared by every handle. */
  readonly agents = new AgentConnections();
  #seccomp: string | undefined;
  #thawed: Promise<void> | undefined;

  constructor(options: DockerBackendOptions) {
    this.#options = options;
    this.#docker = options.docker ?? new Docker();
    this.#mode = options.workspaceMode ?? (process.getuid?.() === 0 ? 'loop' : 'volume');
    this.#snapshots = new SnapshotStore(options.dataDir, {
      root: options.snapshotsDir,
      owner: options.instanceId,
    });
    this.#suspendedDir = join(options.dataDir, 'suspended');
    this.#workspaces = new LoopWorkspaces(options.dataDir, {
      ...(options.workspaceHeadroomBytes === undefined
        ? {}
        : { headroomBytes: options.workspaceHeadroomBytes }),
      ...(options.workspacePool && this.#mode === 'loop' ? { pool: options.workspacePool } : {}),
    });
  }

  capabilities(): BackendCapabilities {
    return {
      pause: true,
      // Docker's checkpoint (`docker checkpoint create`) needs CRIU on the host and the daemon's experimental mode;
      // Docker 20.10 here has neither, so memory is never saved: suspend, snapshots and forks keep the workspace and
      // programs start afresh.
      checkpoint: false,
      // Snapshots copy the workspace's loop image; a Docker volume has no image to copy.
      snapshots: this.#mode === 'loop',
      networkModes: ['none'],
      terminal: true,
      diskQuota: this.#mode === 'loop',
      connect: true,
      listen: true,
    };
  }

  async available(): Promise<{ ok: true } | { ok: false; reason: string }> {
    try {
      await this.#docker.ping();
    } catch (error) {
      return { ok: false, reason: mapDockerError(error, 'Docker').message };
    }
    try {
      this.#seccompProfile();
    } catch (error) {
      return { ok: false, reason: (error as Error).message };
    }
    if (this.#mode === 'loop' && process.getuid?.() !== 0) {
      return {
        ok: false,
        reason: "workspace quotas need root to loop-mount images: run as root or use workspaceMode 'volume'",
      };
    }
    return { ok: true };
  }

  async create(spec: SandboxSpec): Promise<DockerSandbox> {
    validateSandboxSpec(spec, this.#options.limits);
    // Looked up before anything is made: a create from a missing snapshot or for another image makes nothing.
    const snapshot = spec.fromSnapshot === undefined ? undefined : await this.#fromSnapshot(spec);
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
      [LABEL_WORKSPACE]: this.#mode,
      ...(this.#options.instanceId ? { 'studio.instance': this.#options.instanceId } : {}),
    };
    let workspace: { type: 'bind' | 'volume'; source: string };
    // The loop workspace is made while Docker creates the container: the bind needs only its mount point to
    // exist at create, and the mount itself at start.
    let making: Promise<unknown> = Promise.resolve();
    try {
      if (this.#mode === 'loop') {
        workspace = { type: 'bind', source: await this.#workspaces.prepareMountPoint(id) };
      } else {
        const volume = await this.#docker.createVolume({ Name: `${NAME_PREFIX}${id}`, Labels: labels });
        workspace = { type: 'volume', source: volume.name };
      }
      const config = containerConfig({
        name: `${NAME_PREFIX}${id}`,
        image: spec.image,
        command: AGENT_COMMAND,
        labels,
        resources: spec.resources,
        workspace,
        agentDir: this.#options.agentDir ?? AGENT_DIR,
        seccompProfile: this.#seccompProfile(),
        apparmorProfile: hostHasAppArmor() ? (this.#options.apparmorProfile ?? 'studio-sandbox') : undefined,
      });
      if (this.#mode === 'loop') {
        making = snapshot
          ? this.#workspaces
              .createFrom(id, snapshot.workspaceImage)
              .catch((error: unknown) => this.#snapshotGone(snapshot.info.id, error))
          : this.#workspaces.create(id, spec.resources.diskBytes, spec.resources.inodes);
      }
      // Both settle before a failure is handled, so the clean-up below never races a mount still going on.
      const [created, made] = await Promise.allSettled([this.#docker.createContainer(config), making]);
      if (made.status === 'rejected') throw made.reason;
      if (created.status === 'rejected') throw created.reason;
      const container = created.value;
      await container.start();
      const sandbox = new DockerSandbox(this, id);
      await sandbox.ready();
      return sandbox;
    } catch (error) {
      await this.destroy(id).catch(() => undefined);
      throw mapDockerError(error, `sandbox from image ${spec.image}`);
    }
  }

  /** The snapshot a create starts from: `NOT_FOUND`, or `INVALID_INPUT` for another image. */
  async #fromSnapshot(spec: SandboxSpec): Promise<StoredSnapshot> {
    this.assertSnapshots();
    const snapshot = await this.#snapshots.get(spec.fromSnapshot as string);
    if (snapshot.info.image !== spec.image) {
      throw new IsolationError(
        'INVALID_INPUT',
        `snapshot ${snapshot.info.id} was taken from image ${snapshot.info.image}, not ${spec.image}: create it with image ${snapshot.info.image}`,
      );
    }
    return snapshot;
  }

  /** A copy from a snapshot failed: `NOT_FOUND` when it was deleted meanwhile, else the copy's own error. */
  async #snapshotGone(snapshotId: string, error: unknown): Promise<never> {
    const still = await this.#snapshots.get(snapshotId).then(
      () => true,
      () => false,
    );
    if (still) throw error;
    throw new IsolationError('NOT_FOUND', `snapshot ${snapshotId} was deleted during the create`, {
      cause: error,
    });
  }

  /** @internal `UNSUPPORTED` unless snapshots are available (loop workspaces). */
  assertSnapshots(): void {
    if (this.#mode !== 'loop') {
      throw new IsolationError(
        'UNSUPPORTED',
        "suspend and snapshots need loop workspaces (a snapshot copies the workspace's image): run the backend as root with workspaceMode 'loop'",
      );
    }
  }

  async listSnapshots(): Promise<SnapshotInfo[]> {
    // Without the capability the backend keeps none (and could not delete one).
    if (this.#mode !== 'loop') return [];
    return this.#snapshots.list();
  }

  async deleteSnapshot(snapshotId: string): Promise<void> {
    this.assertSnapshots();
    await this.#snapshots.delete(snapshotId);
  }

  /** @internal */
  get snapshots(): SnapshotStore {
    return this.#snapshots;
  }

  /** @internal Whether sandbox `id` was suspended (and not started since). */
  async isSuspended(id: string): Promise<boolean> {
    return stat(join(this.#suspendedDir, id)).then(
      () => true,
      () => false,
    );
  }

  /** @internal Marks sandbox `id` suspended, or clears the mark. */
  async markSuspended(id: string, suspended: boolean): Promise<void> {
    assertId(id);
    const marker = join(this.#suspendedDir, id);
    if (!suspended) {
      await rm(marker, { force: true });
      return;
    }
    await mkdir(this.#suspendedDir, { recursive: true, mode: 0o700 });
    await writeFile(marker, '', { mode: 0o600 });
  }

  async #suspendedIds(): Promise<Set<string>> {
    return new Set(await readdir(this.#suspendedDir).catch(() => [] as string[]));
  }

  /** @internal Runs `fn` after every earlier suspend or snapshot of sandbox `id` settled. */
  serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#serial.get(id) ?? Promise.resolve();
    const result = before.then(fn, fn);
    const tail = result.catch(() => undefined);
    this.#serial.set(id, tail);
    void tail.then(() => {
      if (this.#serial.get(id) === tail) this.#serial.delete(id);
    });
    return result;
  }

  async #inUse(id: string): Promise<boolean> {
    if (await this.#workspaces.exists(id)) return true;
    try {
      await this.#docker.getContainer(`${NAME_PREFIX}${id}`).inspect();
      return true;
    } catch (error) {
      const mapped = mapDockerError(error, `sandbox ${id}`);
      if (mapped.code === 'NOT_FOUND') return false;
      throw mapped;
    }
  }

  async get(id: string): Promise<DockerSandbox> {
    await this.inspect(id);
    return new DockerSandbox(this, id);
  }

  async list(filter: ListFilter = {}): Promise<SandboxInfo[]> {
    const label = [`${MANAGED_LABEL}=true`, `studio.backend=${this.name}`];
    for (const [k, v] of Object.entries(filter.labels ?? {})) label.push(`${k}=${v}`);
    try {
      // list() is what the API's reconciliation polls: the place to repair images a host fstrim made sparse.
      if (this.#mode === 'loop') {
        await this.#workspaces.fillHoles();
        void this.#workspaces.fillPool();
        // Once per process: a snapshot copy a crash cut short left its workspace frozen (gVisor's reconcile does it).
        this.#thawed ??= this.#workspaces.thawAll().catch(() => undefined);
      }
      const [containers, readOnly, suspended] = await Promise.all([
        this.#docker.listContainers({ all: true, filters: { label } }),
        this.#workspaces.readOnlyIds(),
        this.#suspendedIds(),
      ]);
      return containers.map((c) => {
        const id = c.Labels[LABEL_SANDBOX] ?? c.Id;
        return {
          id,
          backend: this.name,
          image: c.Image,
          labels: c.Labels,
          createdAt: new Date(c.Created * 1000),
          ...(readOnly.has(id) ? WORKSPACE_READ_ONLY : { state: stateOf(c.State, suspended.has(id)) }),
        };
      });
    } catch (error) {
      throw mapDockerError(error, 'sandbox list');
    }
  }

  async destroy(id: string): Promise<void> {
    // Idempotent: an id this backend could never have made names nothing to remove.
    if (!ID_PATTERN.test(id)) return;
    await this.agents.drop(id);
    try {
      await this.#docker.getContainer(`${NAME_PREFIX}${id}`).remove({ force: true, v: true });
    } catch (error) {
      const mapped = mapDockerError(error, `sandbox ${id}`);
      if (mapped.code !== 'NOT_FOUND' && !/removal.*in progress/i.test(mapped.message)) throw mapped;
    }
    await this.#docker
      .getVolume(`${NAME_PREFIX}${id}`)
      .remove()
      .catch(() => undefined);
    await this.#workspaces.destroy(id);
    await this.markSuspended(id, false);
  }

  async close(): Promise<void> {
    await this.agents.dropAll();
    await this.#workspaces.close();
  }

  /** @internal */
  async inspect(id: string): Promise<Docker.ContainerInspectInfo> {
    assertId(id);
    try {
      const info = await this.#docker.getContainer(`${NAME_PREFIX}${id}`).inspect();
      if (info.Config.Labels?.[MANAGED_LABEL] !== 'true')
        throw new IsolationError('NOT_FOUND', `sandbox ${id} not found`);
      return info;
    } catch (error) {
      throw mapDockerError(error, `sandbox ${id}`);
    }
  }

  /** @internal */
  container(id: string): Docker.Container {
    return this.#docker.getContainer(`${NAME_PREFIX}${id}`);
  }

  /**
   * Imports a root filesystem tar (a template's build, issue 19) as image `ref`, with the configuration every
   * Studio image has (PATH, HOME, user 1000:1000, /workspace) and `labels`. Not part of the isolation contract:
   * the API calls it on the Docker backend only. Idempotent: an existing `ref` is replaced.
   */
  async importImage(tarPath: string, ref: string, labels: Record<string, string>): Promise<void> {
    const [repo, tag] = ref.split(':') as [string, string | undefined];
    const changes = [
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'ENV HOME=/home/studio',
      'USER 1000:1000',
      'WORKDIR /workspace',
      `LABEL ${Object.entries(labels)
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
        .join(' ')}`,
    ];
    try {
      const stream = (await this.#docker.importImage(tarPath, {
        repo,
        tag: tag ?? 'latest',
        changes,
        message: `Claude Studio template ${ref}`,
      } as never)) as unknown as NodeJS.ReadableStream;
      // The daemon reports progress and failures as JSON lines; the import is done when the stream ends.
      const output = await new Promise<string>((resolve, reject) => {
        let text = '';
        stream.on('data', (chunk: Buffer) => {
          text += chunk.toString('utf8');
        });
        stream.on('end', () => resolve(text));
        stream.on('error', reject);
      });
      const failure = /"error"\s*:\s*"([^"]*)"/.exec(output);
      if (failure) throw new Error(failure[1]);
    } catch (error) {
      throw mapDockerError(error, `importing image ${ref}`);
    }
  }

  /**
   * The id of image `ref` on the daemon, or undefined when there is none (templates built `FROM` a host image key
   * their copy of its root filesystem by it).
   */
  async imageId(ref: string): Promise<string | undefined> {
    try {
      return (await this.#docker.getImage(ref).inspect()).Id;
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return undefined;
      throw mapDockerError(error, `image ${ref}`);
    }
  }

  /**
   * Writes the root filesystem of image `ref` to `tarPath` (a container made from it and never started, exported,
   * removed). For templates built `FROM` an image already on the host.
   */
  async exportImage(ref: string, tarPath: string): Promise<void> {
    let container: Docker.Container | undefined;
    try {
      container = await this.#docker.createContainer({
        Image: ref,
        Cmd: ['/nonexistent'],
        NetworkDisabled: true,
        Labels: { 'studio.export': '1' },
      });
      const stream = (await container.export()) as unknown as NodeJS.ReadableStream;
      await pipeline(stream, createWriteStream(tarPath, { mode: 0o600 }));
    } catch (error) {
      throw mapDockerError(error, `exporting image ${ref}`);
    } finally {
      await container?.remove({ force: true }).catch(() => undefined);
    }
  }

  /** Whether image `ref` exists on the daemon. */
  async hasImage(ref: string): Promise<boolean> {
    try {
      await this.#docker.getImage(ref).inspect();
      return true;
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return false;
      throw mapDockerError(error, `image ${ref}`);
    }
  }

  /** Removes image `ref`; false when there was none. Refused (CONFLICT-like error) while a container uses it. */
  async removeImage(ref: string): Promise<boolean> {
    try {
      await this.#docker.getImage(ref).remove();
      return true;
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return false;
      throw mapDockerError(error, `removing image ${ref}`);
    }
  }

  /** @internal */
  get workspaces(): LoopWorkspaces {
    return this.#workspaces;
  }

  /** @internal */
  get modem(): {
    demuxStream(stream: NodeJS.ReadableStream, out: NodeJS.WritableStream, err: NodeJS.WritableStream): void;
  } {
    return this.#docker.modem as never;
  }

  /** @internal */
  get agentTimeoutMs(): number {
    return this.#options.agentTimeoutMs ?? 15_000;
  }

  #seccompProfile(): string {
    if (this.#seccomp) return this.#seccomp;
    const path = this.#options.seccompProfile;
    if (!existsSync(path)) {
      throw new IsolationError(
        'UNAVAILABLE',
        `seccomp profile not found at ${path}: pass seccompProfile (the API's STUDIO_SECCOMP_PROFILE)`,
      );
    }
    // Parse to fail early on a broken file; Docker's API wants the profile's JSON text, not a path.
    this.#seccomp = JSON.stringify(JSON.parse(readFileSync(path, 'utf8')));
    return this.#seccomp;
  }
}

/** A handle to one Docker sandbox. Cheap to create; the agent connection is opened on first use. */
export class DockerSandbox extends AgentSandbox {
  readonly backend = 'docker';
  readonly id: string;
  readonly #backend: DockerBackend;

  constructor(backend: DockerBackend, id: string) {
    super();
    this.#backend = backend;
    this.id = id;
  }

  protected get connections(): AgentConnections {
    return this.#backend.agents;
  }

  /** Waits until the agent answers. */
  async ready(): Promise<void> {
    await this.agent();
  }

  protected async connectAgent(): Promise<AgentClient> {
    const info = await this.#backend.inspect(this.id);
    if (!info.State.Running || info.State.Paused) {
      throw new IsolationError('INVALID_STATE', `sandbox ${this.id} is ${await this.#notRunning(info)}`);
    }
    let stream: NodeJS.ReadWriteStream;
    try {
      stream = (await this.#backend.container(this.id).attach({
        stream: true,
        stdin: true,
        stdout: true,
        stderr: true,
        hijack: true,
      })) as NodeJS.ReadWriteStream;
    } catch (error) {
      throw mapDockerError(error, `sandbox ${this.id}`);
    }
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    stderr.resume();
    this.#backend.modem.demuxStream(stream, stdout, stderr);
    stream.on('end', () => stdout.end());
    stream.on('close', () => stdout.end());
    stream.on('error', () => stdout.end());
    const client = new AgentClient({
      input: stdout,
      output: stream as unknown as NodeJS.WritableStream as never,
    });
    try {
      await client.hello(this.#backend.agentTimeoutMs);
    } catch (error) {
      await client.close().catch(() => undefined);
      throw await this.explainFailure(error);
    }
    return client;
  }

  /** What a sandbox that is not running is, and the fix: "paused: resume it first", "suspended: start it first". */
  async #notRunning(info: Docker.ContainerInspectInfo): Promise<string> {
    if (info.State.Paused) return 'paused: resume it first';
    const state = (await this.#backend.isSuspended(this.id)) ? 'suspended' : info.State.Status;
    return `${state}: start it first`;
  }

  protected override async explainFailure(error: unknown): Promise<unknown> {
    if (!isIsolationError(error, 'UNAVAILABLE')) return error;
    const info = await this.#backend.inspect(this.id).catch(() => undefined);
    if (info?.State.OOMKilled) {
      return new IsolationError(
        'RESOURCE_LIMIT',
        `sandbox ${this.id} ran out of memory and stopped; start it again`,
        {
          cause: error,
          details: { limit: 'memory' },
        },
      );
    }
    return error;
  }

  async info(): Promise<SandboxInfo> {
    const info = await this.#backend.inspect(this.id);
    const readOnly =
      info.Config.Labels?.[LABEL_WORKSPACE] === 'loop' &&
      (await this.#backend.workspaces.readOnlyIds()).has(this.id);
    const suspended = await this.#backend.isSuspended(this.id);
    const failure = info.State.OOMKilled
      ? ({ code: 'RESOURCE_LIMIT', reason: 'the sandbox ran out of memory' } as const)
      : undefined;
    return {
      id: this.id,
      backend: this.backend,
      image: info.Config.Image,
      labels: info.Config.Labels ?? {},
      createdAt: new Date(info.Created),
      ...(readOnly
        ? WORKSPACE_READ_ONLY
        : { state: stateOf(info.State.Status, suspended), ...(failure ? { failure } : {}) }),
    };
  }

  async stats(): Promise<SandboxStats> {
    const info = await this.#backend.inspect(this.id);
    let raw: Docker.ContainerStats;
    try {
      raw = (await this.#backend
        .container(this.id)
        .stats({ stream: false, 'one-shot': true } as never)) as never;
    } catch (error) {
      throw mapDockerError(error, `sandbox ${this.id}`);
    }
    const cache = (raw.memory_stats?.stats as { cache?: number } | undefined)?.cache ?? 0;
    const disk =
      info.Config.Labels?.[LABEL_WORKSPACE] === 'loop' ? await this.#backend.workspaces.usage(this.id) : null;
    return {
      memoryBytes: Math.max(0, (raw.memory_stats?.usage ?? 0) - cache),
      memoryLimitBytes: info.HostConfig.Memory ?? 0,
      cpuNanos: raw.cpu_stats?.cpu_usage?.total_usage ?? 0,
      pids: raw.pids_stats?.current ?? 0,
      diskUsedBytes: disk?.used ?? null,
      diskLimitBytes: disk?.limit ?? null,
    };
  }

  async stop(): Promise<void> {
    await this.disconnectAgent();
    try {
      await this.#backend.container(this.id).stop({ t: 0 });
    } catch (error) {
      const mapped = mapDockerError(error, `sandbox ${this.id}`);
      if (mapped.code !== 'INVALID_STATE') throw mapped;
    }
  }

  /** Starts a stopped or suspended sandbox; a suspended one starts afresh (no memory was saved). */
  async start(): Promise<void> {
    const info = await this.#backend.inspect(this.id);
    if (info.State.Running) {
      await this.#backend.markSuspended(this.id, false);
      return;
    }
    if (info.Config.Labels?.[LABEL_WORKSPACE] === 'loop') await this.#backend.workspaces.mount(this.id);
    try {
      await this.#backend.container(this.id).start();
    } catch (error) {
      throw mapDockerError(error, `sandbox ${this.id}`);
    }
    await this.#backend.markSuspended(this.id, false);
    await this.agent();
  }

  /**
   * Stops the container and marks it suspended: the workspace is kept, memory is not (no `checkpoint`), so
   * `start()` starts its programs afresh. Idempotent.
   */
  async suspend(): Promise<{ memory: boolean }> {
    this.#backend.assertSnapshots();
    return this.#backend.serial(this.id, async () => {
      await this.#backend.inspect(this.id);
      await this.disconnectAgent();
      try {
        // A paused container is stopped too (Docker thaws it to deliver the kill).
        await this.#backend.container(this.id).stop({ t: 0 });
      } catch (error) {
        const mapped = mapDockerError(error, `sandbox ${this.id}`);
        if (mapped.code !== 'INVALID_STATE') throw mapped;
      }
      // Marked once stopped: a crash in between leaves it `stopped`, which on Docker starts the same way.
      await this.#backend.markSuspended(this.id, true);
      return { memory: false };
    });
  }

  /**
   * Copies the workspace's image into snapshot `snapshotId` while the container is paused (so no process writes
   * during the copy), then lets it run on. Workspace only: no memory (no `checkpoint`).
   */
  async snapshot(snapshotId: string): Promise<SnapshotInfo> {
    this.#backend.assertSnapshots();
    if (typeof snapshotId !== 'string' || !SNAPSHOT_ID_PATTERN.test(snapshotId)) {
      throw new IsolationError(
        'INVALID_INPUT',
        'a snapshot id must be "snp-" and 16 lowercase hex digits (newSnapshotId() makes one)',
      );
    }
    return this.#backend.serial(this.id, async () => {
      const info = await this.#backend.inspect(this.id);
      if (info.Config.Labels?.[LABEL_WORKSPACE] !== 'loop') {
        throw new IsolationError(
          'UNSUPPORTED',
          `sandbox ${this.id} has a Docker volume workspace, which cannot be snapshotted: snapshot sandboxes created with workspaceMode 'loop'`,
        );
      }
      if (!info.State.Running || info.State.Paused) {
        throw new IsolationError(
          'INVALID_STATE',
          `only a running sandbox can be snapshotted, and sandbox ${this.id} is ${await this.#notRunning(info)}`,
        );
      }
      const draft = await this.#backend.snapshots.begin(snapshotId);
      try {
        const container = this.#backend.container(this.id);
        try {
          await container.pause();
        } catch (error) {
          throw mapDockerError(error, `sandbox ${this.id}`);
        }
        const copy = await this.#backend.workspaces.copyOut(this.id, draft.workspaceImage).then(
          () => ({ ok: true as const }),
          (error: unknown) => ({ ok: false as const, error }),
        );
        try {
          await container.unpause();
        } catch (error) {
          // A sandbox left frozen is reported, whatever the copy did.
          throw mapDockerError(error, `sandbox ${this.id} (unpausing after the snapshot)`);
        }
        if (!copy.ok) throw copy.error;
        const shape = await this.#backend.workspaces.shape(this.id);
        return await draft.commit({
          sandboxId: this.id,
          image: info.Config.Image,
          memory: false,
          diskBytes: shape.diskBytes,
          inodes: shape.inodes,
        });
      } finally {
        await draft.abort();
      }
    });
  }

  async pause(): Promise<void> {
    try {
      await this.#backend.container(this.id).pause();
    } catch (error) {
      throw mapDockerError(error, `sandbox ${this.id}`);
    }
  }

  async resume(): Promise<void> {
    try {
      await this.#backend.container(this.id).unpause();
    } catch (error) {
      throw mapDockerError(error, `sandbox ${this.id}`);
    }
  }

  async destroy(): Promise<void> {
    await this.disconnectAgent();
    await this.#backend.destroy(this.id);
  }
}

function stateOf(status: string, suspended = false): SandboxState {
  // The mark only counts while the container is down: a container started behind the backend's back runs.
  if (suspended && status !== 'running' && status !== 'paused') return 'suspended';
  switch (status) {
    case 'running':
      return 'running';
    case 'paused':
      return 'paused';
    case 'created':
      return 'creating';
    case 'dead':
      return 'failed';
    default:
      return 'stopped';
  }
}

const WORKSPACE_READ_ONLY = { state: 'failed', failure: WORKSPACE_READ_ONLY_FAILURE } as const;

const ID_PATTERN = SANDBOX_ID_PATTERN;

function assertId(id: string): void {
  if (!ID_PATTERN.test(id))
    throw new IsolationError('NOT_FOUND', `sandbox ${JSON.stringify(id).slice(0, 64)} not found`);
}

function hostHasAppArmor(): boolean {
  return existsSync('/sys/kernel/security/apparmor');
}
