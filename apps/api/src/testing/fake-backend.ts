import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync } from 'node:fs';
import { cp, lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type BackendCapabilities,
  type IsolationBackend,
  IsolationError,
  type ListFilter,
  type SandboxInfo,
  type SandboxSpec,
  type SandboxState,
  type SandboxStats,
  SNAPSHOT_ID_PATTERN,
  type SnapshotInfo,
  validateSandboxSpec,
} from '@studio/isolation';
import { type AgentClient, AgentConnections, AgentSandbox } from '@studio/sandbox-agent';
import { type LocalAgent, spawnLocalAgent } from '@studio/sandbox-agent/local';
import { isProcessAlive } from '../instance/instance.ts';

// Every fake backend's root is `<tmp>/studio-fake-backend/<pid>-<random>`: made when a sandbox first runs its
// agent, removed when its last sandbox is destroyed or the backend closed. Unit tests rarely destroy every
// sandbox and a test runner may end its workers without an exit event, so a new backend also removes the roots
// of processes that are gone.
const PARENT = join(realpathSync(tmpdir()), 'studio-fake-backend');
let swept = false;

function sweepStaleRoots(): void {
  if (swept) return;
  swept = true;
  let names: string[];
  try {
    names = readdirSync(PARENT);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(/^(\d+)-/.exec(name)?.[1]);
    if (pid > 0 && !isProcessAlive(pid)) rmSync(join(PARENT, name), { recursive: true, force: true });
  }
}

/**
 * A backend for the API's unit tests. Sandboxes are records in memory, each with a real workspace (a temporary
 * directory) served by the real agent run as a plain host process (`spawnLocalAgent`, started on first use), so
 * exec, files, terminals, watches and `connect` behave as the contract says without a container runtime. It is
 * not a sandbox: commands run on the host as the test user, in the workspace directory, so tests give it only
 * harmless commands. It passes the conformance suite except the cases that need a real sandbox
 * (`fake-backend.test.ts` names them with reasons).
 *
 * Suspend and snapshots keep the workspace only (`checkpoint: false`): a suspend is a stop with state `suspended`,
 * a snapshot a copy of the workspace directory under `<root>-snapshots/` (recorded in memory), and a create from
 * one copies it back.
 *
 * Test hooks: `failCreate`, `createDelayMs`, `available_`, `sandboxes`, {@link FakeSandbox.state} and
 * {@link plant}.
 */
export class FakeBackend implements IsolationBackend {
  readonly name: string;
  readonly sandboxes = new Map<string, FakeSandbox>();
  /** Set to make `create` fail with this error. */
  failCreate: Error | undefined;
  /** Delay of `create`, in ms. */
  createDelayMs = 0;
  available_: { ok: true } | { ok: false; reason: string } = { ok: true };
  /** Written as the `studio.instance` label, like the real backends do, when set. */
  readonly instanceId: string | undefined;
  /** The host directory holding this backend's workspaces (`<root>/<id>`) and agent homes; made on first use. */
  readonly root: string;
  /** @internal One agent connection per sandbox, shared by every handle. */
  readonly agents = new AgentConnections();
  /** Snapshots by id, oldest first; each a copy of a workspace directory in {@link snapshotDir}. */
  readonly #snapshots = new Map<string, SnapshotInfo>();
  #next = 0;

  constructor(name = 'docker', instanceId?: string) {
    this.name = name;
    this.instanceId = instanceId;
    sweepStaleRoots();
    this.root = join(PARENT, `${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  capabilities(): BackendCapabilities {
    return {
      pause: true,
      // Its processes are host processes: nothing could save their memory.
      checkpoint: false,
      snapshots: true,
      networkModes: ['none'],
      terminal: true,
      diskQuota: false,
      connect: true,
      listen: true,
    };
  }

  async available() {
    return this.available_;
  }

  async create(spec: SandboxSpec): Promise<FakeSandbox> {
    if (this.createDelayMs) await new Promise((r) => setTimeout(r, this.createDelayMs));
    if (this.failCreate) throw this.failCreate;
    validateSandboxSpec(spec);
    if (spec.id !== undefined && this.sandboxes.has(spec.id)) {
      throw new IsolationError(
        'ALREADY_EXISTS',
        `sandbox id ${spec.id} is in use: create without an id, or with a new one`,
      );
    }
    if (spec.fromSnapshot === undefined) return this.#make(spec, this.instanceId);
    const snapshot = this.#snapshots.get(spec.fromSnapshot);
    if (!snapshot) {
      throw new IsolationError(
        'NOT_FOUND',
        `snapshot ${JSON.stringify(spec.fromSnapshot).slice(0, 64)} not found`,
      );
    }
    if (snapshot.image !== spec.image) {
      throw new IsolationError(
        'INVALID_INPUT',
        `snapshot ${snapshot.id} was taken from image ${snapshot.image}, not ${spec.image}: create it with image ${snapshot.image}`,
      );
    }
    const resources = { ...spec.resources, diskBytes: snapshot.diskBytes, inodes: snapshot.inodes };
    const sandbox = this.#make({ ...spec, resources }, this.instanceId);
    this.ensureRoot();
    await copyTree(this.snapshotDir(snapshot.id), sandbox.workspace);
    return sandbox;
  }

  /** Where snapshot `id`'s copy of a workspace is. */
  snapshotDir(id: string): string {
    return join(`${this.root}-snapshots`, id);
  }

  /** @internal Copies `sandbox`'s workspace as snapshot `id` (the sandbox checked its state). */
  async takeSnapshot(sandbox: FakeSandbox, id: string): Promise<SnapshotInfo> {
    if (typeof id !== 'string' || !SNAPSHOT_ID_PATTERN.test(id)) {
      throw new IsolationError(
        'INVALID_INPUT',
        'a snapshot id must be "snp-" and 16 lowercase hex digits (newSnapshotId() makes one)',
      );
    }
    if (this.#snapshots.has(id)) {
      throw new IsolationError('ALREADY_EXISTS', `snapshot ${id} exists: use a new snapshot id`);
    }
    const dir = this.snapshotDir(id);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await copyTree(sandbox.workspace, dir).catch(async (error: unknown) => {
      await rm(dir, { recursive: true, force: true });
      throw error;
    });
    const info: SnapshotInfo = {
      id,
      sandboxId: sandbox.id,
      image: sandbox.spec.image,
      memory: false,
      bytes: await treeBytes(dir),
      diskBytes: sandbox.spec.resources.diskBytes,
      inodes: sandbox.spec.resources.inodes,
      createdAt: new Date(),
    };
    this.#snapshots.set(id, info);
    return { ...info };
  }

  async listSnapshots(): Promise<SnapshotInfo[]> {
    return [...this.#snapshots.values()].map((info) => ({ ...info }));
  }

  async deleteSnapshot(snapshotId: string): Promise<void> {
    if (!this.#snapshots.delete(snapshotId)) return;
    await rm(this.snapshotDir(snapshotId), { recursive: true, force: true });
    if (this.#snapshots.size === 0) await rm(`${this.root}-snapshots`, { recursive: true, force: true });
  }

  /**
   * Test hook: a sandbox as an API with `instanceId` would have made it (its `studio.instance` label), which
   * `create` refuses as a reserved label.
   */
  async plant(spec: SandboxSpec, instanceId: string | undefined): Promise<FakeSandbox> {
    validateSandboxSpec(spec);
    return this.#make(spec, instanceId);
  }

  async get(id: string): Promise<FakeSandbox> {
    const s = this.sandboxes.get(id);
    if (!s) throw new IsolationError('NOT_FOUND', `sandbox ${JSON.stringify(id).slice(0, 64)} not found`);
    return s;
  }

  async list(filter: ListFilter = {}): Promise<SandboxInfo[]> {
    const all = await Promise.all([...this.sandboxes.values()].map((s) => s.info()));
    return all.filter((i) => Object.entries(filter.labels ?? {}).every(([k, v]) => i.labels[k] === v));
  }

  async destroy(id: string): Promise<void> {
    const sandbox = this.sandboxes.get(id);
    this.sandboxes.delete(id);
    await sandbox?.teardown();
    if (this.sandboxes.size === 0) this.#removeRoot();
  }

  async close(): Promise<void> {
    await this.agents.dropAll();
    if (this.sandboxes.size === 0) this.#removeRoot();
  }

  /** @internal Makes the root (private to the test user) before a sandbox first uses its workspace. */
  ensureRoot(): void {
    mkdirSync(PARENT, { recursive: true, mode: 0o700 });
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
  }

  #removeRoot(): void {
    rmSync(this.root, { recursive: true, force: true });
  }

  #make(spec: SandboxSpec, instanceId: string | undefined): FakeSandbox {
    const id = spec.id ?? `sbx-${(this.#next++).toString(16).padStart(16, '0')}`;
    const labels = { ...spec.labels, ...(instanceId ? { 'studio.instance': instanceId } : {}) };
    const sandbox = new FakeSandbox(this, id, { ...spec, labels });
    this.sandboxes.set(id, sandbox);
    return sandbox;
  }
}

/** A fake sandbox: its workspace is `<backend root>/<id>`, its agent a host process started on first use. */
export class FakeSandbox extends AgentSandbox {
  readonly id: string;
  readonly backend: string;
  readonly spec: SandboxSpec;
  /** Where the agent (and so every exec) sees the workspace. */
  readonly workspace: string;
  readonly #home: string;
  readonly #owner: FakeBackend;
  readonly #createdAt = new Date();
  #state: SandboxState = 'running';
  /** Test hook: the `failure` info() reports (e.g. a workspace gone read-only, with state `failed`). */
  failure: SandboxInfo['failure'];
  #destroyed = false;
  #local: LocalAgent | undefined;

  constructor(owner: FakeBackend, id: string, spec: SandboxSpec) {
    super();
    this.#owner = owner;
    this.id = id;
    this.backend = owner.name;
    this.spec = spec;
    this.workspace = join(owner.root, id);
    this.#home = join(owner.root, `${id}-home`);
  }

  /** The runtime's state. Test hook: setting `stopped` or `failed` ends its processes, as a runtime would. */
  get state(): SandboxState {
    return this.#state;
  }
  set state(state: SandboxState) {
    this.#state = state;
    if (state === 'stopped' || state === 'failed' || state === 'suspended') void this.#stopAgent();
  }

  protected get connections(): AgentConnections {
    return this.#owner.agents;
  }

  protected override agent(): Promise<AgentClient> {
    try {
      this.#assertState(['running']);
    } catch (error) {
      return Promise.reject(error);
    }
    return super.agent();
  }

  protected async connectAgent(): Promise<AgentClient> {
    this.#assertState(['running']);
    await this.#local?.[Symbol.asyncDispose]();
    this.#owner.ensureRoot();
    mkdirSync(this.workspace, { recursive: true, mode: 0o700 });
    // Its own HOME, so login shells and tools never touch the test user's.
    this.#local = await spawnLocalAgent({ workspace: this.workspace, env: { HOME: this.#home } });
    return this.#local.client;
  }

  async info(): Promise<SandboxInfo> {
    this.#assertState();
    return {
      id: this.id,
      backend: this.backend,
      image: this.spec.image,
      state: this.#state,
      labels: { ...this.spec.labels },
      createdAt: this.#createdAt,
      ...(this.failure ? { failure: this.failure } : {}),
    };
  }

  /** Memory, CPU time and processes of the agent and everything it started, read from /proc. */
  async stats(): Promise<SandboxStats> {
    this.#assertState(['running', 'paused']);
    await this.agent().catch(() => undefined);
    const pid = this.#local?.child.pid;
    const tree = pid === undefined ? [] : processTree(pid);
    const ticksToNanos = 1e9 / 100; // USER_HZ is 100 on Linux
    return {
      memoryBytes: Math.min(
        this.spec.resources.memoryBytes,
        tree.reduce((sum, p) => sum + p.rssBytes, 0),
      ),
      memoryLimitBytes: this.spec.resources.memoryBytes,
      cpuNanos: tree.reduce((sum, p) => sum + p.cpuTicks, 0) * ticksToNanos,
      pids: tree.length,
      diskUsedBytes: null,
      diskLimitBytes: null,
    };
  }

  async stop(): Promise<void> {
    this.#assertState();
    this.#state = 'stopped';
    await this.#stopAgent();
  }

  async start(): Promise<void> {
    this.#assertState(['running', 'stopped', 'failed', 'suspended']);
    if (this.#state === 'running') return;
    await this.#stopAgent();
    this.#state = 'running';
  }

  async pause(): Promise<void> {
    this.#assertState(['running']);
    this.#state = 'paused';
  }

  async resume(): Promise<void> {
    this.#assertState(['paused']);
    this.#state = 'running';
  }

  /** A stop with state `suspended`: the workspace is kept, processes end (no memory is saved). Idempotent. */
  async suspend(): Promise<{ memory: boolean }> {
    this.#assertState();
    this.#state = 'suspended';
    await this.#stopAgent();
    return { memory: false };
  }

  /** Copies the workspace as snapshot `snapshotId`; the sandbox runs on. */
  async snapshot(snapshotId: string): Promise<SnapshotInfo> {
    this.#assertState(['running']);
    return this.#owner.takeSnapshot(this, snapshotId);
  }

  async destroy(): Promise<void> {
    await this.#owner.destroy(this.id);
  }

  /** @internal Ends the agent and removes the workspace; called once by the backend's `destroy`. */
  async teardown(): Promise<void> {
    this.#destroyed = true;
    await this.#stopAgent();
    rmSync(this.workspace, { recursive: true, force: true });
    rmSync(this.#home, { recursive: true, force: true });
  }

  async #stopAgent(): Promise<void> {
    await this.disconnectAgent();
    const local = this.#local;
    this.#local = undefined;
    await local?.[Symbol.asyncDispose]();
    // A runtime's stop ends every process; a program started detached (setsid) outlives the agent here.
    killProcessesIn(this.workspace);
  }

  /** NOT_FOUND once destroyed; INVALID_STATE when the state is not one of `allowed`. */
  #assertState(allowed?: readonly SandboxState[]): void {
    if (this.#destroyed) throw new IsolationError('NOT_FOUND', `sandbox ${this.id} not found`);
    if (allowed !== undefined && !allowed.includes(this.#state)) {
      const fix = this.#state === 'paused' ? 'resume it first' : 'start it first';
      throw new IsolationError('INVALID_STATE', `sandbox ${this.id} is ${this.#state}: ${fix}`);
    }
  }
}

/** SIGKILLs every process whose working directory is `dir` or under it (what sandbox programs left running). */
function killProcessesIn(dir: string): void {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let cwd: string;
    try {
      cwd = readlinkSync(`/proc/${name}/cwd`);
    } catch {
      continue; // gone, or not ours to look at
    }
    if (cwd !== dir && !cwd.startsWith(`${dir}/`)) continue;
    try {
      process.kill(Number(name), 'SIGKILL');
    } catch {
      // it ended meanwhile
    }
  }
}

/** Copies directory `from` into `to` (made if missing): files, directories and links as they are; no sockets or fifos. */
async function copyTree(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true, mode: 0o700 });
  const exists = await lstat(from).then(
    () => true,
    () => false,
  );
  if (!exists) return; // a workspace no agent has used yet is empty
  await cp(from, to, {
    recursive: true,
    verbatimSymlinks: true,
    preserveTimestamps: true,
    filter: async (source) => {
      const s = await lstat(source);
      return s.isFile() || s.isDirectory() || s.isSymbolicLink();
    },
  });
}

/** Bytes the files under `dir` hold. */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await lstat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

interface ProcessUse {
  rssBytes: number;
  cpuTicks: number;
}

/** `root` and its live descendants, with their resident memory and CPU time (their own and their reaped children's). */
function processTree(root: number): ProcessUse[] {
  const parent = new Map<number, number>();
  const use = new Map<number, ProcessUse>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      // Fields after the command name, which may itself hold spaces and parentheses.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const pid = Number(name);
      parent.set(pid, Number(f[1]));
      const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(f[i] ?? 0), 0);
      use.set(pid, { rssBytes: Number(f[21] ?? 0) * 4096, cpuTicks: ticks });
    } catch {
      // the process ended while we looked
    }
  }
  const inTree = (pid: number): boolean => {
    for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 0 && hops < 64; hops++) {
      if (p === root) return true;
      p = parent.get(p);
    }
    return false;
  };
  return [...use.entries()].filter(([pid]) => inTree(pid)).map(([, u]) => u);
}
