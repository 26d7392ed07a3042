import type { Duplex } from 'node:stream';
import {
  type BackendCapabilities,
  type ExecOptions,
  type ExecResult,
  type FileEntry,
  type FileStat,
  type FileWatch,
  type IsolationBackend,
  IsolationError,
  type ListFilter,
  type Sandbox,
  type SandboxInfo,
  type SandboxSpec,
  type SandboxState,
  type SandboxStats,
  type Terminal,
} from '@studio/isolation';

/** An in-memory backend for unit tests: sandboxes are records, files a map, exec echoes its argv. */
export class FakeBackend implements IsolationBackend {
  readonly name: string;
  readonly sandboxes = new Map<string, FakeSandbox>();
  /** Set to make `create` fail with this error. */
  failCreate: Error | undefined;
  /** Delay of `create`, in ms. */
  createDelayMs = 0;
  available_: { ok: true } | { ok: false; reason: string } = { ok: true };
  #next = 0;

  /** Written as the `studio.instance` label, like the real backends do, when set. */
  readonly instanceId: string | undefined;

  constructor(name = 'docker', instanceId?: string) {
    this.name = name;
    this.instanceId = instanceId;
  }

  capabilities(): BackendCapabilities {
    return {
      pause: true,
      checkpoint: false,
      networkModes: ['none'],
      terminal: false,
      diskQuota: false,
      connect: false,
    };
  }
  async available() {
    return this.available_;
  }
  async create(spec: SandboxSpec): Promise<Sandbox> {
    if (this.createDelayMs) await new Promise((r) => setTimeout(r, this.createDelayMs));
    if (this.failCreate) throw this.failCreate;
    // (spec labels win, so unit tests can plant sandboxes of another instance)
    const labels = { ...(this.instanceId ? { 'studio.instance': this.instanceId } : {}), ...spec.labels };
    const sandbox = new FakeSandbox(this, `sbx-${(this.#next++).toString(16).padStart(16, '0')}`, {
      ...spec,
      labels,
    });
    this.sandboxes.set(sandbox.id, sandbox);
    return sandbox;
  }
  async get(id: string): Promise<Sandbox> {
    const s = this.sandboxes.get(id);
    if (!s) throw new IsolationError('NOT_FOUND', `sandbox ${id} not found`);
    return s;
  }
  async list(filter: ListFilter = {}): Promise<SandboxInfo[]> {
    const all = await Promise.all([...this.sandboxes.values()].map((s) => s.info()));
    return all.filter((i) => Object.entries(filter.labels ?? {}).every(([k, v]) => i.labels[k] === v));
  }
  async destroy(id: string): Promise<void> {
    this.sandboxes.delete(id);
  }
  async close(): Promise<void> {}
}

const unsupported = () => Promise.reject(new IsolationError('UNSUPPORTED', 'not in the fake backend'));

export class FakeSandbox implements Sandbox {
  readonly id: string;
  readonly backend: string;
  readonly spec: SandboxSpec;
  readonly files = new Map<string, Uint8Array>();
  state: SandboxState = 'running';
  readonly #owner: FakeBackend;

  constructor(owner: FakeBackend, id: string, spec: SandboxSpec) {
    this.#owner = owner;
    this.id = id;
    this.backend = owner.name;
    this.spec = spec;
  }
  async info(): Promise<SandboxInfo> {
    return {
      id: this.id,
      backend: this.backend,
      image: this.spec.image,
      state: this.state,
      labels: { ...this.spec.labels },
      createdAt: new Date(),
    };
  }
  async exec(command: readonly string[], options: ExecOptions): Promise<ExecResult> {
    if (this.state !== 'running') throw new IsolationError('INVALID_STATE', 'stopped');
    const out = new TextEncoder().encode(`${command.join(' ')}\n`);
    return {
      exitCode: 0,
      signal: null,
      stdout: out.slice(0, options.maxOutputBytes),
      stderr: new Uint8Array(),
      timedOut: false,
      truncated: out.byteLength > options.maxOutputBytes,
      oomKilled: false,
      durationMs: 1,
    };
  }
  openTerminal(): Promise<Terminal> {
    return unsupported();
  }
  async readFile(path: string): Promise<Uint8Array> {
    const f = this.files.get(path);
    if (!f) throw new IsolationError('NOT_FOUND', `${path}: no such file`);
    return f;
  }
  async writeFile(path: string, data: Uint8Array | string): Promise<void> {
    this.files.set(path, typeof data === 'string' ? new TextEncoder().encode(data) : data);
  }
  async list(): Promise<FileEntry[]> {
    return [...this.files.entries()].map(([name, d]) => ({
      name,
      type: 'file',
      size: d.byteLength,
      mtimeMs: 0,
      mode: 0o644,
    }));
  }
  stat(): Promise<FileStat> {
    return unsupported();
  }
  mkdir(): Promise<void> {
    return unsupported();
  }
  async remove(path: string): Promise<void> {
    this.files.delete(path);
  }
  rename(): Promise<void> {
    return unsupported();
  }
  watchFiles(): Promise<FileWatch> {
    return unsupported();
  }
  connect(): Promise<Duplex> {
    return unsupported();
  }
  async stats(): Promise<SandboxStats> {
    return {
      memoryBytes: 1,
      memoryLimitBytes: this.spec.resources.memoryBytes,
      cpuNanos: 1,
      pids: 1,
      diskUsedBytes: null,
      diskLimitBytes: null,
    };
  }
  async stop(): Promise<void> {
    this.state = 'stopped';
  }
  async start(): Promise<void> {
    this.state = 'running';
  }
  async pause(): Promise<void> {
    this.state = 'paused';
  }
  async resume(): Promise<void> {
    this.state = 'running';
  }
  async destroy(): Promise<void> {
    await this.#owner.destroy(this.id);
  }
  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}
