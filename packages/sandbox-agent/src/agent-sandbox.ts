import type { Duplex } from 'node:stream';
import type {
  ExecOptions,
  ExecResult,
  FileChanges,
  FileEntry,
  FileStat,
  FileWatch,
  Sandbox,
  SandboxInfo,
  SandboxListener,
  SandboxStats,
  SnapshotInfo,
  Terminal,
  TerminalOptions,
} from '@studio/isolation';
import { IsolationError } from '@studio/isolation';
import type { AgentConnections } from './agent-connections.ts';
import type { AgentClient } from './client.ts';

/**
 * A `Sandbox` whose exec, terminals, files and connections all go through the in-sandbox agent, so
 * every backend behaves the same there. A backend supplies only what differs: how to reach the agent
 * and the lifecycle (info, stats, stop/start, pause, destroy).
 */
export abstract class AgentSandbox implements Sandbox {
  abstract readonly id: string;
  abstract readonly backend: string;

  /** The backend's connections, shared by every handle to the same sandbox. */
  protected abstract readonly connections: AgentConnections;
  /** Opens a new connection to the agent of a running sandbox (attach, stdio pipes, …). */
  protected abstract connectAgent(): Promise<AgentClient>;
  abstract info(): Promise<SandboxInfo>;
  abstract stats(): Promise<SandboxStats>;
  abstract stop(): Promise<void>;
  abstract start(): Promise<void>;
  abstract pause(): Promise<void>;
  abstract resume(): Promise<void>;
  abstract suspend(): Promise<{ memory: boolean }>;
  abstract snapshot(snapshotId: string): Promise<SnapshotInfo>;
  abstract destroy(): Promise<void>;

  /**
   * Maps a failure of an agent call to what the caller should see; a backend overrides it to turn
   * "agent went away" into `RESOURCE_LIMIT` when the runtime says the sandbox died of a limit.
   */
  protected async explainFailure(error: unknown): Promise<unknown> {
    return error;
  }

  /** The sandbox's live agent connection, opening one if there is none (after a restart, say). */
  protected agent(): Promise<AgentClient> {
    return this.connections.get(this.id, () => this.connectAgent());
  }

  /** Closes the agent connection for every handle (on stop and destroy). */
  protected disconnectAgent(): Promise<void> {
    return this.connections.drop(this.id);
  }

  async #call<T>(fn: (client: AgentClient) => Promise<T>): Promise<T> {
    const client = await this.agent();
    try {
      return await fn(client);
    } catch (error) {
      throw await this.explainFailure(error);
    }
  }

  async exec(command: readonly string[], options: ExecOptions): Promise<ExecResult> {
    if (command.length === 0)
      throw new IsolationError('INVALID_INPUT', 'exec needs a command: pass at least argv[0]');
    return this.#call((c) => c.exec(command, options));
  }
  openTerminal(options: TerminalOptions): Promise<Terminal> {
    return this.#call((c) => c.openTerminal(options));
  }
  readFile(path: string, options?: { maxBytes?: number }): Promise<Uint8Array> {
    return this.#call((c) => c.readFile(path, options));
  }
  writeFile(
    path: string,
    data: Uint8Array | string,
    options?: { createParents?: boolean; mode?: number },
  ): Promise<void> {
    return this.#call((c) => c.writeFile(path, data, options));
  }
  list(path: string, options?: { maxEntries?: number }): Promise<FileEntry[]> {
    return this.#call((c) => c.list(path, options));
  }
  stat(path: string): Promise<FileStat> {
    return this.#call((c) => c.stat(path));
  }
  mkdir(path: string, options?: { recursive?: boolean }): Promise<void> {
    return this.#call((c) => c.mkdir(path, options));
  }
  remove(path: string, options?: { recursive?: boolean }): Promise<void> {
    return this.#call((c) => c.remove(path, options));
  }
  rename(from: string, to: string): Promise<void> {
    return this.#call((c) => c.rename(from, to));
  }
  connect(port: number): Promise<Duplex> {
    return this.#call((c) => c.connect(port));
  }
  listen(port: number, onConnection: (socket: Duplex) => void): Promise<SandboxListener> {
    return this.#call((c) => c.listen(port, (socket) => onConnection(socket)));
  }

  watchFiles(listener: (batch: FileChanges) => void, options?: { maxDirs?: number }): Promise<FileWatch> {
    return this.#call((c) => c.watch(listener, options));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}
