import type { Duplex } from 'node:stream';

/** Network modes a sandbox may have. `none` (loopback only) is the default and the only mode this release offers. */
export type NetworkMode = 'none';

/** Hard limits of one sandbox. Every field is a cap enforced by the runtime, not a hint. */
export interface ResourceLimits {
  /** Memory cap in bytes; swap is set equal to it (no extra swap). */
  memoryBytes: number;
  /** CPU quota in cores (e.g. 1 = one core's worth of time per period), a cap, not shares. */
  cpus: number;
  /** Maximum number of processes and threads in the sandbox. */
  pids: number;
  /** Workspace size quota in bytes. */
  diskBytes: number;
  /** Workspace inode quota. */
  inodes: number;
  /** Size of the sandbox's private /tmp in bytes. */
  tmpBytes: number;
}

/**
 * What to create. Deliberately small: callers (and so clients) never choose mounts, capabilities,
 * devices, privileged mode, users or a working directory outside /workspace.
 */
export interface SandboxSpec {
  /**
   * The sandbox's id (`SANDBOX_ID_PATTERN`), chosen by the caller so that it can record the owner of everything
   * the backend is about to create before any of it exists (issue 17); default a fresh one. An id already in use
   * is refused with `ALREADY_EXISTS`, and the sandbox holding it is left alone.
   */
  id?: string;
  /** The image: a name the backend resolves (Docker image tag, or a rootfs the gVisor backend knows). */
  image: string;
  resources: ResourceLimits;
  /** Defaults to `none`. */
  network?: NetworkMode;
  /** Labels carried on everything the backend creates, for listing and reconciliation. Keys `studio.*` are reserved. */
  labels?: Record<string, string>;
  /**
   * Start from a snapshot ({@link Sandbox.snapshot}, `SNAPSHOT_ID_PATTERN`) instead of an empty workspace: the new
   * sandbox gets its own copy of the snapshot's workspace (its size and inode count are the snapshot's, whatever
   * `resources` says) and, when the snapshot holds memory, its processes carry on from that point (a fork).
   * `image` must be the snapshot's. `NOT_FOUND` when there is no such snapshot.
   */
  fromSnapshot?: string;
}

/**
 * The lifecycle state of a sandbox as the runtime reports it. `paused`: frozen in place, memory held
 * ({@link Sandbox.pause}). `suspended`: saved and released, nothing of it runs or is held in the host's memory
 * ({@link Sandbox.suspend}); `start()` brings it back.
 */
export type SandboxState = 'creating' | 'running' | 'stopped' | 'paused' | 'suspended' | 'failed';

/** What `list()` and `Sandbox.info()` report. */
export interface SandboxInfo {
  id: string;
  backend: string;
  image: string;
  state: SandboxState;
  labels: Record<string, string>;
  createdAt: Date;
  /** Set when `state` is `failed`, or when the sandbox last stopped because of a limit. */
  failure?: {
    code: 'RESOURCE_LIMIT' | 'INTERNAL';
    reason: string;
    /** `read-only`: the workspace's filesystem went read-only (a host write error aborted its journal). */
    workspace?: 'read-only';
  };
}

/** What a backend can do, declared in advance so callers never discover it by failing. */
export interface BackendCapabilities {
  /** Freeze and thaw all processes. */
  pause: boolean;
  /**
   * Save and restore the whole sandbox state: `suspend()`, `snapshot()` and creates from a snapshot carry memory,
   * processes and open files, so running programs carry on where they were. Without it they carry the workspace
   * only, and programs start again.
   */
  checkpoint: boolean;
  /** `suspend()`, `snapshot()`, `deleteSnapshot()` and `create({ fromSnapshot })` (the workspace at least). */
  snapshots: boolean;
  networkModes: readonly NetworkMode[];
  /** PTYs with resize. */
  terminal: boolean;
  /** A hard workspace quota (bytes and inodes). */
  diskQuota: boolean;
  /** `connect(port)` to a TCP port inside the sandbox. */
  connect: boolean;
  /** `listen(port)`: connections sandbox programs make to a loopback port reach the host (egress). */
  listen: boolean;
}

/** A listener on the sandbox's loopback ({@link Sandbox.listen}). */
export interface SandboxListener {
  /** The port bound inside the sandbox (127.0.0.1). */
  readonly port: number;
  /** Resolves when the listener ends: closed, or the sandbox stopped or its agent went away. */
  readonly ended: Promise<void>;
  close(): void;
}

/** Options for {@link Sandbox.exec}. */
export interface ExecOptions {
  /** Working directory relative to /workspace (validated); default the workspace root. */
  cwd?: string;
  env?: Record<string, string>;
  /** Bytes written to the process's stdin, then stdin is closed. An async iterable streams it. */
  stdin?: string | Uint8Array | AsyncIterable<Uint8Array>;
  /** Wall-clock limit; past it the whole process group is killed and `timedOut` is true. */
  timeoutMs: number;
  /** Cap on stdout + stderr kept and streamed; output past it is dropped and `truncated` is true. */
  maxOutputBytes: number;
  onStdout?: (chunk: Uint8Array) => void;
  onStderr?: (chunk: Uint8Array) => void;
  /** Aborting kills the process group; the promise then rejects with `CANCELLED`. */
  signal?: AbortSignal;
}

/** The outcome of an exec that ran (a timeout is an outcome, not an error). */
export interface ExecResult {
  /** Null when the process was killed by a signal. */
  exitCode: number | null;
  signal: string | null;
  stdout: Uint8Array;
  stderr: Uint8Array;
  timedOut: boolean;
  /** True when output passed `maxOutputBytes` and the rest was dropped. */
  truncated: boolean;
  /** True when the kernel's OOM killer ended the process (or, on gVisor, the sandbox). */
  oomKilled: boolean;
  durationMs: number;
}

/** Options for {@link Sandbox.openTerminal}. */
export interface TerminalOptions {
  cols: number;
  rows: number;
  /** Defaults to a login shell. */
  command?: string[];
  cwd?: string;
  env?: Record<string, string>;
}

/** A PTY inside the sandbox. */
export interface Terminal extends AsyncDisposable {
  write(data: string | Uint8Array): void;
  resize(cols: number, rows: number): void;
  /** Output; the returned function unsubscribes. */
  onData(listener: (chunk: Uint8Array) => void): () => void;
  /** Resolves when the shell exits or the terminal is closed. */
  readonly exited: Promise<{ exitCode: number | null; signal: string | null }>;
  close(): Promise<void>;
}

/** A directory entry. Paths are relative to /workspace. */
export interface FileEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  size: number;
  mtimeMs: number;
  mode: number;
}

export interface FileStat extends FileEntry {
  path: string;
}

/** A batch of workspace changes seen inside the sandbox ({@link Sandbox.watchFiles}). */
export interface FileChanges {
  /**
   * Workspace-relative paths as the sandbox reported them: untrusted names, validate before use. `rename`:
   * created, removed or moved; `change`: contents or metadata.
   */
  changes: { path: string; kind: 'rename' | 'change' }[];
  /** Some changes were dropped (too many at once, or nobody read them): list the workspace again. */
  overflow: boolean;
}

/** A running {@link Sandbox.watchFiles}. */
export interface FileWatch {
  /** Directories watched; `limited`: the workspace has more than were watched. */
  readonly dirs: number;
  readonly limited: boolean;
  /** Resolves when the watch ends: closed, or the sandbox stopped or its agent went away. */
  readonly ended: Promise<void>;
  close(): void;
}

/** A saved copy of a sandbox ({@link Sandbox.snapshot}), kept by the backend until `deleteSnapshot`. */
export interface SnapshotInfo {
  /** `SNAPSHOT_ID_PATTERN`, chosen by the caller. */
  id: string;
  /** The sandbox it was taken from (which may since be gone). */
  sandboxId: string;
  /** The image a sandbox made from it must use. */
  image: string;
  /** True when it holds memory and processes (the backend's `checkpoint` capability), false: workspace only. */
  memory: boolean;
  /** Bytes it takes on the host's disk. */
  bytes: number;
  /** The workspace's size and inode quota, which a sandbox made from it gets. */
  diskBytes: number;
  inodes: number;
  createdAt: Date;
}

/** Point-in-time resource use. */
export interface SandboxStats {
  memoryBytes: number;
  memoryLimitBytes: number;
  /** Cumulative CPU time in nanoseconds. */
  cpuNanos: number;
  pids: number;
  diskUsedBytes: number | null;
  diskLimitBytes: number | null;
}

/**
 * A handle to one sandbox. File paths are relative to /workspace and every file operation happens
 * inside the sandbox as its user (uid 1000), resolving links so that nothing outside the workspace is
 * ever read or written, even while sandbox code swaps links in and out.
 */
export interface Sandbox extends AsyncDisposable {
  readonly id: string;
  readonly backend: string;
  info(): Promise<SandboxInfo>;
  exec(command: readonly string[], options: ExecOptions): Promise<ExecResult>;
  openTerminal(options: TerminalOptions): Promise<Terminal>;
  readFile(path: string, options?: { maxBytes?: number }): Promise<Uint8Array>;
  writeFile(
    path: string,
    data: Uint8Array | string,
    options?: { createParents?: boolean; mode?: number },
  ): Promise<void>;
  list(path: string, options?: { maxEntries?: number }): Promise<FileEntry[]>;
  stat(path: string): Promise<FileStat>;
  mkdir(path: string, options?: { recursive?: boolean }): Promise<void>;
  remove(path: string, options?: { recursive?: boolean }): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** A byte stream to 127.0.0.1:`port` inside the sandbox (previews). Never reaches the host. */
  connect(port: number): Promise<Duplex>;
  /**
   * Listens on 127.0.0.1:`port` inside the sandbox (0: any free port): each connection a sandbox program makes to
   * it reaches `onConnection` on the host as a byte stream. The one way out of a sandbox (egress goes through it);
   * the sandbox itself still has no route anywhere. `ALREADY_EXISTS`-class errors when the port is taken.
   */
  listen(port: number, onConnection: (socket: Duplex) => void): Promise<SandboxListener>;
  /**
   * Changes anyone makes under the workspace (sandbox processes included), in batches at most every 100 ms.
   * `.git` and `node_modules` are not entered; at most `maxDirs` (default 4096) directories are watched.
   */
  watchFiles(listener: (batch: FileChanges) => void, options?: { maxDirs?: number }): Promise<FileWatch>;
  stats(): Promise<SandboxStats>;
  /** Stops every process; the workspace is kept. A suspended sandbox's saved memory is discarded (it is `stopped`). */
  stop(): Promise<void>;
  /**
   * Starts a stopped sandbox again with the same workspace, or brings a suspended one back: with its memory when it
   * was saved with it (programs carry on), else started afresh. A saved state that cannot be restored (corrupt,
   * missing, refused by the runtime) rejects with `RESTORE_FAILED`, is discarded, and leaves the sandbox `stopped`
   * with its workspace intact, so the next `start()` starts it afresh.
   */
  start(): Promise<void>;
  /** Freezes every process in place; memory stays held. `UNSUPPORTED` without the `pause` capability. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /**
   * Saves the sandbox and releases it: with `checkpoint`, its memory, processes and open files; without, only the
   * workspace is kept and processes end. Afterwards nothing of it runs or is held in the host's memory; its state
   * is `suspended` until `start()`. Agent channels (execs, terminals, watches, connections) end. Idempotent.
   * `UNSUPPORTED` without the `snapshots` capability. Returns whether memory was saved.
   */
  suspend(): Promise<{ memory: boolean }>;
  /**
   * Saves a copy of the running sandbox as snapshot `snapshotId` (`SNAPSHOT_ID_PATTERN`): its workspace, and with
   * `checkpoint` its memory. The sandbox is paused only for the capture and then runs on; what it writes afterwards
   * is not in the copy. `ALREADY_EXISTS` for an id in use; `UNSUPPORTED` without the `snapshots` capability.
   */
  snapshot(snapshotId: string): Promise<SnapshotInfo>;
  /** Removes the sandbox and its workspace; nothing is left behind. Idempotent. */
  destroy(): Promise<void>;
}

/** Filter for {@link IsolationBackend.list}: every given label must match. */
export interface ListFilter {
  labels?: Record<string, string>;
}

/**
 * One way of isolating sandboxes (Docker, gVisor, …). Every implementation passes
 * `runIsolationConformance()`; what it cannot do it declares in `capabilities()` and refuses with
 * `UNSUPPORTED`, never degrading silently.
 */
export interface IsolationBackend {
  readonly name: string;
  capabilities(): BackendCapabilities;
  /** Whether the runtime is usable here; `reason` names the fix when not. */
  available(): Promise<{ ok: true } | { ok: false; reason: string }>;
  create(spec: SandboxSpec): Promise<Sandbox>;
  /** A handle to an existing sandbox; `NOT_FOUND` when there is none. */
  get(id: string): Promise<Sandbox>;
  list(filter?: ListFilter): Promise<SandboxInfo[]>;
  /** Removes the sandbox and its workspace. Idempotent: an unknown id is not an error. */
  destroy(id: string): Promise<void>;
  /** Snapshots this backend keeps, oldest first; `[]` without the `snapshots` capability. */
  listSnapshots(): Promise<SnapshotInfo[]>;
  /**
   * Removes a snapshot and everything it holds. Idempotent: an unknown id is not an error. `UNSUPPORTED` without
   * the `snapshots` capability.
   */
  deleteSnapshot(snapshotId: string): Promise<void>;
  /** Releases connections the backend holds (not the sandboxes). */
  close(): Promise<void>;
}

/** Labels every backend writes; the `studio.` prefix is reserved for them. */
export const RESERVED_LABEL_PREFIX = 'studio.';
/** Label that marks a runtime object as created by a Studio isolation backend. */
export const MANAGED_LABEL = 'studio.managed';
