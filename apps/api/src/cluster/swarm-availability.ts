import { request } from 'node:http';
import type { NodeAvailability, Store } from '@studio/db';
import type { Logger } from '../core/logger.ts';

interface SwarmNode {
  ID?: unknown;
  Spec?: { Availability?: unknown };
}

const AVAILABILITIES: readonly string[] = ['active', 'pause', 'drain'];

/**
 * Keeps Swarm's word on each node in the store (issue 23): `docker node update --availability pause|drain`
 * takes a node out of placement. Only a manager's Docker answers `GET /nodes`, so the node services on managers
 * do this; on a worker the first answer (503) ends it. Docker is asked over its local socket, which the node
 * service has anyway (it runs the sandboxes).
 */
export class SwarmAvailability {
  readonly #store: Store;
  readonly #logger: Logger;
  readonly #socketPath: string;
  readonly #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: { store: Store; logger: Logger; socketPath?: string; intervalMs?: number }) {
    this.#store = options.store;
    this.#logger = options.logger;
    this.#socketPath = options.socketPath ?? '/var/run/docker.sock';
    this.#intervalMs = options.intervalMs ?? 5000;
  }

  /** Syncs now, then every interval while this Docker is a manager. */
  async start(): Promise<void> {
    if ((await this.sync().catch(() => 'unreachable' as const)) === 'worker') return;
    this.#timer = setInterval(() => {
      this.sync().then(
        (role) => {
          if (role === 'worker') clearInterval(this.#timer);
        },
        (error: unknown) => this.#logger.warn('Swarm availability sync failed', { error }),
      );
    }, this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** One sync: `manager` (synced), `worker` (this Docker cannot tell), or `unreachable`. */
  async sync(): Promise<'manager' | 'worker' | 'unreachable'> {
    const answer = await this.#get('/nodes');
    if (answer === null) return 'unreachable';
    if (answer.status === 503) return 'worker';
    if (answer.status !== 200) {
      this.#logger.warn('Docker refused GET /nodes', { status: answer.status });
      return 'unreachable';
    }
    const nodes = JSON.parse(answer.body) as SwarmNode[];
    for (const node of Array.isArray(nodes) ? nodes : []) {
      const availability = node.Spec?.Availability;
      if (typeof node.ID !== 'string' || typeof availability !== 'string') continue;
      if (!AVAILABILITIES.includes(availability)) continue;
      const changed = await this.#store.setNodeAvailability(node.ID, availability as NodeAvailability);
      if (changed > 0) this.#logger.info('Swarm node availability', { swarmNodeId: node.ID, availability });
    }
    return 'manager';
  }

  /**
   * This Docker's Swarm node: its id and the address it advertises to the other nodes (where the API replicas
   * reach a node service on the host's network); null outside Swarm or when Docker does not answer.
   */
  async self(): Promise<{ nodeId: string; address: string } | null> {
    const answer = await this.#get('/info');
    if (answer?.status !== 200) return null;
    const swarm = (JSON.parse(answer.body) as { Swarm?: { NodeID?: unknown; NodeAddr?: unknown } }).Swarm;
    return typeof swarm?.NodeID === 'string' && swarm.NodeID !== '' && typeof swarm.NodeAddr === 'string'
      ? { nodeId: swarm.NodeID, address: swarm.NodeAddr }
      : null;
  }

  #get(path: string): Promise<{ status: number; body: string } | null> {
    return new Promise((resolve) => {
      const req = request({ socketPath: this.#socketPath, path, method: 'GET', timeout: 5000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', () => resolve(null));
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(null));
      req.end();
    });
  }
}
