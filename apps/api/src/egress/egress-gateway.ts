import type { Duplex } from 'node:stream';
import type { ExecOptions, Sandbox, SandboxListener, TerminalOptions } from '@studio/isolation';
import type { NetworkSettings } from '@studio/policy';
import type { Logger } from '../core/logger.ts';
import type { EgressProxy } from './egress-proxy.ts';

/**
 * The port the proxy endpoint prefers inside every sandbox (squid's, which people recognise); when a program
 * already holds it, any free port is taken instead and the environment names that one.
 */
export const PREFERRED_PROXY_PORT = 3128;

/** The session a sandbox belongs to, for {@link EgressGateway.wrap}. */
export interface EgressOwner {
  sessionId: string;
  ownerId: string;
  network: NetworkSettings;
}

interface Entry {
  owner: EgressOwner;
  sandbox: Sandbox;
  listener: SandboxListener | undefined;
  opening: Promise<SandboxListener> | undefined;
}

/**
 * The environment that points a program at the proxy endpoint: both spellings, because curl reads only lower-case
 * `http_proxy` and some tools only upper-case; npm, pip, git and curl all honour these. `NO_PROXY` keeps the
 * sandbox's own loopback (dev servers, previews) direct.
 */
export function proxyEnvironment(port: number): Record<string, string> {
  const url = `http://127.0.0.1:${port}`;
  const local = 'localhost,127.0.0.1,::1';
  return {
    HTTP_PROXY: url,
    HTTPS_PROXY: url,
    http_proxy: url,
    https_proxy: url,
    NO_PROXY: local,
    no_proxy: local,
  };
}

/**
 * Joins sandboxes to the egress proxy (issue 18). Every sandbox handle the session manager gives out is wrapped:
 * before an exec or a terminal starts, the sandbox has a proxy endpoint (a `listen` port on its loopback whose
 * connections the agent carries to {@link EgressProxy}) and the program's environment names it. The endpoint
 * exists in every network mode, so a program in mode `none` gets the proxy's EGRESS_DENIED answer (and the person
 * an event) instead of a bare connection error. The sandbox itself still has no route out.
 */
export class EgressGateway {
  readonly #proxy: EgressProxy;
  readonly #logger: Logger;
  readonly #entries = new Map<string, Entry>();

  constructor(options: { proxy: EgressProxy; logger: Logger }) {
    this.#proxy = options.proxy;
    this.#logger = options.logger;
  }

  /** The sandbox, with exec and terminals that start behind the proxy endpoint. */
  wrap(sandbox: Sandbox, owner: EgressOwner): Sandbox {
    const entry: Entry = { owner, sandbox, listener: undefined, opening: undefined };
    const previous = this.#entries.get(owner.sessionId);
    if (previous?.sandbox === sandbox) previous.owner = owner;
    else {
      previous?.listener?.close();
      this.#entries.set(owner.sessionId, entry);
    }
    const current = () => this.#entries.get(owner.sessionId) ?? entry;
    const withProxy = async (env: Record<string, string> | undefined) => {
      const port = await this.#endpoint(current());
      return port === null ? env : { ...proxyEnvironment(port), ...env };
    };
    const exec = async (command: readonly string[], options: ExecOptions) => {
      const env = await withProxy(options.env);
      return sandbox.exec(command, { ...options, ...(env ? { env } : {}) });
    };
    const openTerminal = async (options: TerminalOptions) => {
      const env = await withProxy(options.env);
      return sandbox.openTerminal({ ...options, ...(env ? { env } : {}) });
    };
    return new Proxy(sandbox, {
      get(target, property) {
        if (property === 'exec') return exec;
        if (property === 'openTerminal') return openTerminal;
        const value = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  /**
   * New settings for a session: later connections are checked against them, and its open connections end at
   * once (a narrowed list must not leave a tunnel open to a host it no longer allows).
   */
  update(sessionId: string, network: NetworkSettings): void {
    const entry = this.#entries.get(sessionId);
    if (entry) entry.owner = { ...entry.owner, network };
    this.#proxy.closeSession(sessionId);
  }

  /** The session stopped or was destroyed: its endpoint and connections go. */
  forget(sessionId: string): void {
    const entry = this.#entries.get(sessionId);
    this.#entries.delete(sessionId);
    entry?.listener?.close();
    this.#proxy.closeSession(sessionId);
  }

  /**
   * The session's proxy endpoint port, listening again when the last one ended (an agent reset, a restart); null
   * when the sandbox cannot listen (the program then runs without a proxy, so with no way out at all: egress
   * failing must not fail the exec).
   */
  async #endpoint(entry: Entry): Promise<number | null> {
    if (entry.listener) return entry.listener.port;
    entry.opening ??= this.#listen(entry).finally(() => {
      entry.opening = undefined;
    });
    try {
      return (await entry.opening).port;
    } catch (error) {
      this.#logger.warn('egress endpoint could not listen; the program runs without one', {
        sessionId: entry.owner.sessionId,
        error: String(error),
      });
      return null;
    }
  }

  async #listen(entry: Entry): Promise<SandboxListener> {
    const accept = (socket: Duplex) => {
      const owner = entry.owner;
      this.#proxy.handle(socket, {
        sessionId: owner.sessionId,
        ownerId: owner.ownerId,
        settings: () => entry.owner.network,
      });
    };
    let listener: SandboxListener;
    try {
      listener = await entry.sandbox.listen(PREFERRED_PROXY_PORT, accept);
    } catch (error) {
      this.#logger.info('egress endpoint: the preferred port is taken, using another', {
        sessionId: entry.owner.sessionId,
        error: String(error),
      });
      listener = await entry.sandbox.listen(0, accept);
    }
    entry.listener = listener;
    void listener.ended.then(() => {
      if (entry.listener === listener) entry.listener = undefined;
    });
    return listener;
  }
}
