import { availableParallelism, freemem, hostname, loadavg, totalmem } from 'node:os';
import type { NodeCapacity, Store } from '@studio/db';
import type { Logger } from '../core/logger.ts';

/** Where API replicas reach a node service, and the Swarm node it runs on. */
export interface NodeAddress {
  url: string;
  /** Its preview listener; null when previews are off. */
  previewUrl: string | null;
  swarmNodeId: string | null;
}

/** Options for {@link NodeReporter}. */
export interface NodeReporterOptions {
  store: Store;
  /** The node's id: its instance id, which its sessions and sandboxes carry. */
  id: string;
  /** The backends this node can run now. */
  backends: () => Promise<string[]>;
  /** Digests of the templates built on this node. */
  templates?: () => Promise<string[]>;
  logger: Logger;
  /** How often the report is renewed (ms); default 5000, well inside placement's 15 s staleness. */
  intervalMs?: number;
}

/**
 * A node service's heartbeat (issue 23): its address and capacity in the store every few seconds, which is how
 * API replicas find it, place sessions on it and notice when it is gone. A failed report is logged and tried
 * again on the next tick: a node the store cannot hear from for 15 s simply takes no new sessions.
 */
export class NodeReporter {
  readonly #options: NodeReporterOptions;
  #timer: NodeJS.Timeout | undefined;
  #reporting: Promise<void> = Promise.resolve();
  #where: NodeAddress = { url: '', previewUrl: null, swarmNodeId: null };

  constructor(options: NodeReporterOptions) {
    this.#options = options;
  }

  /**
   * Reports once (as a fresh start: a draining mark of the last run is cleared), then every interval, with where
   * API replicas reach this node service.
   */
  async start(where: NodeAddress): Promise<void> {
    this.#where = where;
    await this.#report(true);
    this.#timer = setInterval(() => {
      this.#reporting = this.#report(false).catch((error: unknown) =>
        this.#options.logger.warn('node report failed', { error }),
      );
    }, this.#options.intervalMs ?? 5000);
    this.#timer.unref();
  }

  /** Stops reporting and marks the node draining: placement sends it nothing new while it shuts down. */
  async drain(): Promise<void> {
    clearInterval(this.#timer);
    await this.#reporting;
    await this.#options.store
      .setNodeDraining(this.#options.id, true)
      .catch((error: unknown) => this.#options.logger.warn('could not mark the node draining', { error }));
  }

  async #report(restarted: boolean): Promise<void> {
    const o = this.#options;
    const capacity: NodeCapacity = {
      backends: await o.backends(),
      templates: (await o.templates?.()) ?? [],
      memoryTotalBytes: totalmem(),
      memoryFreeBytes: Math.min(freemem(), totalmem()),
      cpus: availableParallelism(),
      load1: loadavg()[0] ?? 0,
      maxSessions: null,
    };
    await o.store.reportNode(
      {
        id: o.id,
        ...this.#where,
        host: hostname(),
        capacity,
      },
      { restarted },
    );
  }
}
