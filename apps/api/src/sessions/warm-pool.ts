import { type IsolationBackend, newSandboxId, type ResourceLimits, type Sandbox } from '@studio/isolation';
import type { Logger } from '../core/logger.ts';

/**
 * The label on sandboxes made for the pool (kept after a claim: Docker cannot relabel). The backends only let
 * callers set `studio.session`, `studio.owner` and `studio.test` in the reserved `studio.` namespace, so the pool
 * is `studio.session=pool` (session ids are `ses_…`, never `pool`).
 */
export const POOL_LABEL = 'studio.session';
export const POOL_VALUE = 'pool';

/**
 * Where the pool records its members' owner before creating them, and forgets them after destroying them (the
 * store's `sandboxes` table): a crash mid-create then leaves a record reconciliation can act on (issue 17).
 */
export interface PoolOwners {
  record(sandboxId: string, backend: string): Promise<void>;
  forget(sandboxId: string): Promise<void>;
}

/** Options for {@link WarmPool}. */
export interface WarmPoolOptions {
  backends: readonly IsolationBackend[];
  /** Pool size per backend name; a backend not named (or 0) has no pool. */
  sizes: Record<string, number>;
  /** Images to keep warm (each backend keeps `size` sandboxes of each). */
  images: readonly string[];
  /** The default resources: only a create asking for exactly these can claim. */
  resources: ResourceLimits;
  /** This API's instance id (the backends write it as `studio.instance`). */
  instanceId: string;
  /** Extra labels (tests: `studio.test`). */
  labels?: Record<string, string>;
  logger: Logger;
  /** Owner records of the members; none: members are recorded nowhere (tests of the pool alone). */
  owners?: PoolOwners;
  /** Pause after a failed fill before trying again (ms). Default 30 s. */
  retryMs?: number;
}

interface Slot {
  backend: IsolationBackend;
  image: string;
  size: number;
  ready: Sandbox[];
  filling: number;
  failedAt: number;
}

/**
 * Warm sandboxes per backend and image, so `sessions.create` is a claim instead of a cold start. Pool
 * sandboxes belong to no one: they carry `studio.session=pool` and this instance's label (reconciliation leaves
 * them to the pool), get the default resources and `network: none`, and have never run user code. A claim
 * resets the workspace anyway (everything under /workspace removed) before handing the sandbox out, and
 * starts a refill in the background. At start-up, pool sandboxes left by a previous run of this instance are
 * adopted (extra or non-running ones destroyed); {@link close} destroys what is still waiting.
 */
export class WarmPool {
  readonly #o: WarmPoolOptions;
  readonly #slots: Slot[] = [];
  readonly #inflight = new Set<Promise<void>>();
  /** Ids of members being created or handed out now. */
  readonly #creating = new Set<string>();
  #closed = false;
  #started = false;

  constructor(options: WarmPoolOptions) {
    this.#o = options;
    for (const backend of options.backends) {
      const size = options.sizes[backend.name] ?? 0;
      if (size <= 0) continue;
      for (const image of options.images) {
        this.#slots.push({ backend, image, size, ready: [], filling: 0, failedAt: 0 });
      }
    }
  }

  /** Whether any backend has a pool. */
  get enabled(): boolean {
    return this.#slots.length > 0;
  }

  /** Sandboxes waiting, per `backend/image`. */
  status(): Record<string, { size: number; ready: number; filling: number }> {
    return Object.fromEntries(
      this.#slots.map((s) => [
        `${s.backend.name}/${s.image}`,
        { size: s.size, ready: s.ready.length, filling: s.filling },
      ]),
    );
  }

  /**
   * Adopts pool sandboxes of a previous run of this instance (those not in `claimed`, the sandbox ids the store
   * records as sessions'), then fills in the background.
   */
  async start(claimed: ReadonlySet<string>): Promise<void> {
    if (this.#started || !this.enabled) return;
    this.#started = true;
    for (const backend of new Set(this.#slots.map((s) => s.backend))) {
      try {
        if (!(await backend.available()).ok) continue;
        const infos = await backend.list({
          labels: { [POOL_LABEL]: POOL_VALUE, 'studio.instance': this.#o.instanceId },
        });
        for (const info of infos) {
          if (claimed.has(info.id)) continue;
          const slot = this.#slots.find((s) => s.backend === backend && s.image === info.image);
          if (slot && info.state === 'running' && slot.ready.length < slot.size) {
            // A member made by a release without owner records gets one now.
            await this.#o.owners?.record(info.id, backend.name);
            slot.ready.push(await backend.get(info.id));
            this.#o.logger.info('warm pool: adopted a sandbox of the previous run', { sandboxId: info.id });
          } else {
            await this.#destroy(backend, info.id);
          }
        }
      } catch (error) {
        this.#o.logger.warn('warm pool: could not adopt the previous pool', { backend: backend.name, error });
      }
    }
    this.fill();
  }

  /** Starts creating what each pool lacks (in the background; failures are logged and retried later). */
  fill(): void {
    if (this.#closed || !this.#started) return;
    const retryMs = this.#o.retryMs ?? 30_000;
    for (const slot of this.#slots) {
      if (Date.now() - slot.failedAt < retryMs) continue;
      while (slot.ready.length + slot.filling < slot.size) {
        slot.filling++;
        const p = this.#create(slot).finally(() => {
          slot.filling--;
          this.#inflight.delete(p);
        });
        this.#inflight.add(p);
      }
    }
  }

  async #create(slot: Slot): Promise<void> {
    const id = newSandboxId();
    this.#creating.add(id);
    try {
      await this.#o.owners?.record(id, slot.backend.name);
      const sandbox = await slot.backend.create({
        id,
        image: slot.image,
        resources: this.#o.resources,
        network: 'none',
        labels: { ...this.#o.labels, [POOL_LABEL]: POOL_VALUE },
      });
      if (this.#closed) {
        await this.#destroy(slot.backend, sandbox.id);
        return;
      }
      slot.ready.push(sandbox);
    } catch (error) {
      slot.failedAt = Date.now();
      this.#o.logger.warn('warm pool: could not create a sandbox', {
        backend: slot.backend.name,
        image: slot.image,
        error,
      });
      await this.#destroy(slot.backend, id);
    } finally {
      this.#creating.delete(id);
    }
  }

  /** Destroys a member and then forgets its owner record (kept when the destroy fails: reconciliation retries). */
  async #destroy(backend: IsolationBackend, id: string): Promise<void> {
    try {
      await backend.destroy(id);
      await this.#o.owners?.forget(id);
    } catch (error) {
      this.#o.logger.warn('warm pool: could not remove a sandbox', { sandboxId: id, error });
    }
  }

  /**
   * Whether `sandboxId` is a member (waiting or being created) of this pool; undefined before {@link start}
   * adopted the previous run's members, when that cannot be told yet.
   */
  holds(sandboxId: string): boolean | undefined {
    if (!this.#started && this.enabled) return undefined;
    return (
      this.#creating.has(sandboxId) || this.#slots.some((s) => s.ready.some((sb) => sb.id === sandboxId))
    );
  }

  /**
   * A warm sandbox of `backend` and `image` with exactly the default `resources`, its workspace emptied, or
   * undefined (no pool, none ready, other resources, or the reset failed). Starts a refill either way.
   */
  async claim(backend: string, image: string, resources: ResourceLimits): Promise<Sandbox | undefined> {
    const slot = this.#slots.find((s) => s.backend.name === backend && s.image === image);
    if (!slot || !sameResources(resources, this.#o.resources)) return undefined;
    const sandbox = slot.ready.shift();
    this.fill();
    if (!sandbox) return undefined;
    // Still ours until the caller has recorded it as its session's (see `holds`).
    this.#creating.add(sandbox.id);
    try {
      // `.`: the exec's default cwd, the workspace (the contract's; an absolute path would miss a test double's).
      const reset = await sandbox.exec(['sh', '-c', 'find . -mindepth 1 -delete'], {
        timeoutMs: 10_000,
        maxOutputBytes: 4096,
      });
      if (reset.exitCode !== 0) throw new Error(`reset exited ${reset.exitCode}: ${reset.stderr}`);
      return sandbox;
    } catch (error) {
      this.#o.logger.warn('warm pool: reset failed; creating cold instead', { sandboxId: sandbox.id, error });
      await this.#destroy(slot.backend, sandbox.id);
      return undefined;
    } finally {
      this.#creating.delete(sandbox.id);
    }
  }

  /** Stops filling, waits for creates under way and destroys every sandbox still waiting. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#inflight]);
    await Promise.all(
      this.#slots.flatMap((s) => s.ready.splice(0).map((sb) => this.#destroy(s.backend, sb.id))),
    );
  }
}

function sameResources(a: ResourceLimits, b: ResourceLimits): boolean {
  return (
    a.memoryBytes === b.memoryBytes &&
    a.cpus === b.cpus &&
    a.pids === b.pids &&
    a.diskBytes === b.diskBytes &&
    a.inodes === b.inodes &&
    a.tmpBytes === b.tmpBytes
  );
}
