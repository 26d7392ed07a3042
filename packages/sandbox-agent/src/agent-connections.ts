import type { AgentClient } from './client.ts';

/**
 * One agent connection per sandbox, shared by every handle a backend gives out. A second connection
 * would say `hello`, which resets the agent and kills what the first handle was running, so handles
 * must never open their own. A closed connection is forgotten, and the next call opens a fresh one.
 */
export class AgentConnections {
  readonly #entries = new Map<string, { client: Promise<AgentClient>; resolved?: AgentClient }>();

  /** The live connection to sandbox `id`, opened with `connect` when there is none. */
  get(id: string, connect: () => Promise<AgentClient>): Promise<AgentClient> {
    const current = this.#entries.get(id);
    if (current && current.resolved?.isClosed !== true) return current.client;
    const entry: { client: Promise<AgentClient>; resolved?: AgentClient } = { client: connect() };
    this.#entries.set(id, entry);
    const forget = () => {
      if (this.#entries.get(id) === entry) this.#entries.delete(id);
    };
    entry.client.then((client) => {
      entry.resolved = client;
      return client.closed.then(forget);
    }, forget);
    return entry.client;
  }

  /** Closes and forgets the connection to `id` (on stop and destroy). */
  async drop(id: string): Promise<void> {
    const entry = this.#entries.get(id);
    this.#entries.delete(id);
    const client = await entry?.client.catch(() => undefined);
    await client?.close().catch(() => undefined);
  }

  async dropAll(): Promise<void> {
    await Promise.all([...this.#entries.keys()].map((id) => this.drop(id)));
  }
}
