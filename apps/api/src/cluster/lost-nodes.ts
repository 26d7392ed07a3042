import type { Store } from '@studio/db';
import type { Logger } from '../core/logger.ts';

/** A node not heard from for this long has its sessions failed (ms): within 30 s of its death (reports every 5 s). */
export const LOST_NODE_AFTER_MS = 20_000;
/** The same for a node Swarm drained: its service was stopped on purpose, two missed reports are enough. */
export const DRAINED_NODE_AFTER_MS = 10_000;

/**
 * An API replica's watch over the nodes (issue 23): every few seconds, the live sessions of a node that stopped
 * reporting are failed with the reason (Store.failSessionsOfLostNodes), so nobody is shown a running session
 * that no node runs, and so are the template builds it ran. Every replica runs it; the statements are idempotent.
 */
export class LostNodeSweeper {
  readonly #store: Store;
  readonly #logger: Logger;
  readonly #staleMs: number;
  readonly #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> = Promise.resolve();

  constructor(options: { store: Store; logger: Logger; staleMs?: number; intervalMs?: number }) {
    this.#store = options.store;
    this.#logger = options.logger;
    this.#staleMs = options.staleMs ?? LOST_NODE_AFTER_MS;
    this.#intervalMs = options.intervalMs ?? 5000;
  }

  start(): void {
    this.#timer = setInterval(() => {
      this.#running = this.sweep().then(
        () => undefined,
        (error: unknown) => this.#logger.warn('lost-node sweep failed', { error }),
      );
    }, this.#intervalMs);
    this.#timer.unref();
  }

  /** One sweep: the sessions it failed. */
  async sweep(): Promise<{ sessionId: string; nodeId: string }[]> {
    const failed = await this.#store.failSessionsOfLostNodes(
      this.#staleMs,
      Math.min(this.#staleMs, DRAINED_NODE_AFTER_MS),
    );
    for (const f of failed) {
      this.#logger.warn('session failed: its node stopped answering', {
        sessionId: f.sessionId,
        node: f.nodeId,
      });
      await this.#store
        .audit({
          action: 'session.lost',
          outcome: 'failure',
          actorId: null,
          target: f.sessionId,
          details: { node: f.nodeId },
        })
        .catch(() => undefined);
    }
    // The template builds they ran died with them (only a build's own node fails it otherwise).
    for (const b of await this.#store.failBuildsOfLostNodes(this.#staleMs)) {
      this.#logger.warn('template build failed: its node stopped answering', {
        templateId: b.templateId,
        node: b.nodeId,
      });
    }
    return failed;
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }
}
