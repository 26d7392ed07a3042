import { randomBytes } from 'node:crypto';
import { it, type TestContext } from 'vitest';
import type { IsolationBackend, ResourceLimits, Sandbox, SandboxSpec } from '../types.ts';
import { CONFORMANCE_CASE_IDS, type ConformanceCaseId } from './case-ids.ts';

/** Options of {@link runIsolationConformance}. */
export interface ConformanceOptions {
  /** Builds the backend under test; called once per suite, closed in `afterAll`. */
  createBackend: () => IsolationBackend | Promise<IsolationBackend>;
  /** The sandbox image every case runs (e.g. `studio-sandbox:latest`). */
  image: string;
  /** Cases this backend cannot pass, each with a written reason shown in the skipped case's title. */
  skip?: Partial<Record<ConformanceCaseId, string>>;
  /**
   * True in CI: an unavailable runtime fails every case loudly. False: every case is skipped with the
   * one-line reason of `backend.available()`.
   */
  requireRuntime: boolean;
  /** A host directory on the filesystem that holds the workspaces; enables the host free-space check of disk fills. */
  hostPath?: string;
  /**
   * Where processes in `sandbox` see its workspace. Default `/workspace`, as the contract says: only a test
   * double that runs the agent as a host process in a temporary directory (the API's fake backend) sets it,
   * and it must then skip every case that needs a real sandbox.
   */
  workspacePath?: (sandbox: Sandbox) => string;
  /**
   * Damages the saved memory of suspended sandbox `sandboxId` (truncates or corrupts the runtime's checkpoint
   * image) so that `snapshots.restore-failed` can check that `start()` then rejects `RESTORE_FAILED` and keeps the
   * workspace. Only a backend with `checkpoint` has saved memory to damage; without the hook that case is skipped
   * with a reason. The test process runs on the sandbox host, so the hook may write the backend's files directly.
   */
  damageSavedState?: (sandboxId: string) => Promise<void>;
}

/** Generous per-case limit: the cases never assert durations, this only stops a hung backend. */
export const CASE_TIMEOUT_MS = 120_000;

/** Limits of the one shared sandbox that the read-only behaviour and attack cases reuse. */
export const SHARED_LIMITS: ResourceLimits = {
  memoryBytes: 512 * 2 ** 20,
  cpus: 1,
  pids: 256,
  diskBytes: 256 * 2 ** 20,
  inodes: 16_384,
  tmpBytes: 16 * 2 ** 20,
};

/** Small limits of the dedicated sandboxes that destructive cases create and destroy. */
export const SMALL_LIMITS: ResourceLimits = {
  memoryBytes: 256 * 2 ** 20,
  cpus: 1,
  pids: 128,
  diskBytes: 64 * 2 ** 20,
  inodes: 4096,
  tmpBytes: 16 * 2 ** 20,
};

/** Label key every conformance sandbox carries (not `studio.*`: that prefix is reserved for backends). */
export const SUITE_LABEL = 'conformance.suite';
/** Label key holding this run's random id, so a run only ever lists and removes its own sandboxes. */
export const RUN_LABEL = 'conformance.run';

/** A sandbox that is destroyed when the `await using` block ends, whatever happened inside. */
export interface SandboxFixture extends AsyncDisposable {
  readonly sandbox: Sandbox;
  readonly limits: ResourceLimits;
}

type CaseBody = (ctx: TestContext) => Promise<void>;

/**
 * The suite's fixtures: one backend, one lazily created shared sandbox, dedicated sandboxes that are always
 * destroyed, and the registration of cases with skips and the runtime gate.
 * @internal
 */
export class ConformanceHarness {
  readonly runId = randomBytes(6).toString('hex');
  readonly labels: Readonly<Record<string, string>> = { [SUITE_LABEL]: 'isolation', [RUN_LABEL]: this.runId };
  readonly #options: ConformanceOptions;
  readonly #created = new Map<string, Sandbox>();
  readonly #registered = new Set<ConformanceCaseId>();
  /** Ids of every sandbox this run created (destroyed or not), for leftover checks. */
  readonly everCreated = new Set<string>();
  /** Ids of every snapshot this run asked for (deleted or not), for leftover checks. */
  readonly everSnapshotted = new Set<string>();
  #backend: IsolationBackend | undefined;
  #unavailable: string | undefined;
  #shared: Promise<Sandbox> | undefined;

  constructor(options: ConformanceOptions) {
    this.#options = options;
    for (const id of Object.keys(options.skip ?? {})) {
      if (!(CONFORMANCE_CASE_IDS as readonly string[]).includes(id)) {
        throw new Error(`runIsolationConformance: skip names an unknown case id '${id}'`);
      }
    }
  }

  get options(): ConformanceOptions {
    return this.#options;
  }

  /** The backend under test; only valid inside a case (after the runtime gate). */
  get backend(): IsolationBackend {
    if (this.#backend === undefined) throw new Error('conformance: backend used before setup');
    return this.#backend;
  }

  async setup(): Promise<void> {
    try {
      this.#backend = await this.#options.createBackend();
    } catch (error) {
      this.#unavailable = `createBackend() threw: ${oneLine(error)}`;
      return;
    }
    try {
      const availability = await this.#backend.available();
      if (!availability.ok) this.#unavailable = availability.reason;
    } catch (error) {
      this.#unavailable = `available() threw: ${oneLine(error)}`;
    }
  }

  async teardown(): Promise<void> {
    const errors: unknown[] = [];
    try {
      await this.destroyAll();
    } catch (error) {
      errors.push(error);
    }
    try {
      await this.#backend?.close();
    } catch (error) {
      errors.push(error);
    }
    if (errors.length > 0) throw new AggregateError(errors, 'conformance teardown failed');
  }

  /**
   * Registers one case. A skipped case shows its reason in its title; an unavailable runtime fails the case
   * (requireRuntime) or skips it with the backend's reason.
   */
  case(id: ConformanceCaseId, title: string, body: CaseBody, timeout = CASE_TIMEOUT_MS): void {
    if (this.#registered.has(id)) throw new Error(`conformance: case '${id}' registered twice`);
    this.#registered.add(id);
    const name = `${id}: ${title}`;
    const reason = this.#options.skip?.[id];
    if (reason !== undefined) {
      it.skip(`${name} [skipped: ${reason}]`, () => {});
      return;
    }
    it(
      name,
      async (ctx) => {
        if (this.#unavailable !== undefined) {
          if (this.#options.requireRuntime) {
            throw new Error(`isolation runtime unavailable (requireRuntime is true): ${this.#unavailable}`);
          }
          ctx.skip(this.#unavailable);
        }
        await body(ctx);
      },
      timeout,
    );
  }

  /** Throws when a case id has no registered case: the id list and the cases must not drift apart. */
  assertAllRegistered(): void {
    const missing = CONFORMANCE_CASE_IDS.filter((id) => !this.#registered.has(id));
    if (missing.length > 0) throw new Error(`conformance: case ids without a case: ${missing.join(', ')}`);
  }

  /** Where processes in `sandbox` see its workspace: `/workspace` unless {@link ConformanceOptions.workspacePath} says otherwise. */
  workspace(sandbox: Sandbox): string {
    const path = this.#options.workspacePath?.(sandbox) ?? '/workspace';
    // Cases put it into shell scripts.
    if (!/^\/[A-Za-z0-9._/-]+$/.test(path)) {
      throw new Error(
        `conformance: workspacePath ${JSON.stringify(path)} must be absolute, without shell characters`,
      );
    }
    return path;
  }

  /** Creates a labelled sandbox (from a snapshot when `from` names one) and tracks it until it is destroyed. */
  async create(
    limits: ResourceLimits = SMALL_LIMITS,
    from: Pick<SandboxSpec, 'fromSnapshot'> = {},
  ): Promise<Sandbox> {
    const sandbox = await this.backend.create({
      image: this.#options.image,
      resources: limits,
      network: 'none',
      labels: { ...this.labels },
      ...(from.fromSnapshot === undefined ? {} : { fromSnapshot: from.fromSnapshot }),
    });
    this.#created.set(sandbox.id, sandbox);
    this.everCreated.add(sandbox.id);
    return sandbox;
  }

  /** A dedicated sandbox for `await using`: destroyed at the end of the block even when the case fails. */
  async dedicated(
    limits: ResourceLimits = SMALL_LIMITS,
    from: Pick<SandboxSpec, 'fromSnapshot'> = {},
  ): Promise<SandboxFixture> {
    const sandbox = await this.create(limits, from);
    return {
      sandbox,
      limits,
      [Symbol.asyncDispose]: () => this.destroy(sandbox),
    };
  }

  /** The one sandbox that read-only behaviour and attack cases share; created on first use. */
  shared(): Promise<Sandbox> {
    this.#shared ??= this.create(SHARED_LIMITS);
    return this.#shared;
  }

  async destroy(sandbox: Sandbox): Promise<void> {
    await sandbox.destroy();
    this.#created.delete(sandbox.id);
  }

  /** Destroys every sandbox this run created, including any the backend lists under this run's labels. */
  async destroyAll(): Promise<void> {
    if (this.#backend === undefined) return;
    const backend = this.#backend;
    const errors: unknown[] = [];
    const shared = this.#shared;
    this.#shared = undefined;
    if (shared !== undefined) await shared.catch(() => undefined);
    const ids = new Set(this.#created.keys());
    try {
      for (const info of await backend.list({ labels: { [RUN_LABEL]: this.runId } })) ids.add(info.id);
    } catch (error) {
      errors.push(error);
    }
    for (const id of ids) {
      try {
        const sandbox = this.#created.get(id);
        if (sandbox === undefined) await backend.destroy(id);
        else await sandbox.destroy();
        this.#created.delete(id);
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'conformance: could not destroy every sandbox');
  }
}

/** The first line of an error's message, for skip reasons and titles. */
export function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n', 1)[0] ?? text;
}
