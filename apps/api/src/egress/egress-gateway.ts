import type { Duplex } from 'node:stream';
import type { ExecOptions, Sandbox, SandboxListener, TerminalOptions } from '@studio/isolation';
import { type NetworkSettings, secretGoesTo } from '@studio/policy';
import type { Logger } from '../core/logger.ts';
import type { EgressProxy, SecretBinding } from './egress-proxy.ts';

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
  /** Names of the owner's secrets the session is given (placeholders in its environment). */
  secrets: readonly string[];
}

/** A secret the proxy may put into requests, with the hosts it may go to. */
export interface GrantedSecret extends SecretBinding {
  readonly hosts: readonly string[];
}

/** Where the gateway gets secrets from (the API's store and vault). */
export interface SecretSource {
  /** The placeholder session `sessionId` sees for secret `name` (no store read: it is derived). */
  placeholder(sessionId: string, name: string): string;
  /** The owner's secrets among `names`, opened; a name with no stored secret is left out. */
  granted(ownerId: string, sessionId: string, names: readonly string[]): Promise<GrantedSecret[]>;
}

/** Where the sandbox finds the certificates it trusts for egress: the Studio CA and the operator's extra CAs. */
export const TRUST_DIR = '/tmp/studio-egress';
const TRUST_EXTRA = `${TRUST_DIR}/ca.pem`;
const TRUST_BUNDLE = `${TRUST_DIR}/ca-bundle.pem`;

/**
 * The environment that makes programs trust the Studio CA (and the operator's extra CAs) beside the image's own
 * roots: Node adds `NODE_EXTRA_CA_CERTS` to its roots; OpenSSL (curl, git, Python's ssl), requests and pip read
 * the bundle, which is the image's roots followed by those CAs. The image's store itself is read-only.
 */
export function trustEnvironment(): Record<string, string> {
  return {
    NODE_EXTRA_CA_CERTS: TRUST_EXTRA,
    SSL_CERT_FILE: TRUST_BUNDLE,
    REQUESTS_CA_BUNDLE: TRUST_BUNDLE,
    CURL_CA_BUNDLE: TRUST_BUNDLE,
    GIT_SSL_CAINFO: TRUST_BUNDLE,
    PIP_CERT: TRUST_BUNDLE,
  };
}

interface Entry {
  owner: EgressOwner;
  sandbox: Sandbox;
  listener: SandboxListener | undefined;
  opening: Promise<SandboxListener> | undefined;
  /** The trust files are in the sandbox: programs get the variables that name them. */
  trusted: boolean;
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
  readonly #trust: { studioCa: string; extra: readonly string[] } | undefined;
  readonly #secrets: SecretSource | undefined;

  /**
   * `trust`: the Studio CA (sessions with secrets need it: the proxy signs their secret hosts' certificates with it)
   * and the operator's extra CAs (every session needs them), written into a sandbox when its endpoint opens, and
   * only when there is one to write: the write is an exec on the way to a session's first output.
   * `secrets`: where the placeholders and values come from.
   */
  constructor(options: {
    proxy: EgressProxy;
    logger: Logger;
    trust?: { studioCa: string; extra: readonly string[] };
    secrets?: SecretSource;
  }) {
    this.#proxy = options.proxy;
    this.#logger = options.logger;
    this.#trust = options.trust;
    this.#secrets = options.secrets;
  }

  /** The certificates a session's sandbox must trust beside the image's roots; null when none. */
  #trustFor(owner: EgressOwner): string | null {
    if (!this.#trust) return null;
    const pems = [...(owner.secrets.length > 0 ? [this.#trust.studioCa] : []), ...this.#trust.extra];
    return pems.length > 0 ? pems.join('\n') : null;
  }

  /** The environment a program of the session starts with: proxy, trust, and a placeholder for each secret. */
  #environment(entry: Entry, port: number): Record<string, string> {
    const owner = entry.owner;
    const env: Record<string, string> = { ...proxyEnvironment(port) };
    if (entry.trusted) Object.assign(env, trustEnvironment());
    if (this.#secrets) {
      for (const name of owner.secrets) env[name] = this.#secrets.placeholder(owner.sessionId, name);
    }
    return env;
  }

  /** The sandbox, with exec and terminals that start behind the proxy endpoint. */
  wrap(sandbox: Sandbox, owner: EgressOwner): Sandbox {
    const entry: Entry = { owner, sandbox, listener: undefined, opening: undefined, trusted: false };
    const previous = this.#entries.get(owner.sessionId);
    if (previous?.sandbox === sandbox) previous.owner = owner;
    else {
      previous?.listener?.close();
      this.#entries.set(owner.sessionId, entry);
      // Opened now, in the background, so that a session's first exec finds it ready more often than not.
      void this.#endpoint(entry);
    }
    const current = () => this.#entries.get(owner.sessionId) ?? entry;
    const withProxy = async (env: Record<string, string> | undefined) => {
      const entry = current();
      const port = await this.#endpoint(entry);
      return port === null ? env : { ...this.#environment(entry, port), ...env };
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
   * Opens the session's proxy endpoint again now (after a resume, issue 20: the restored agent's listeners ended
   * with the pause), so programs that carried on reach the proxy before anyone runs a command. Best effort.
   */
  async reopen(sessionId: string): Promise<void> {
    const entry = this.#entries.get(sessionId);
    if (entry) await this.#endpoint(entry);
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
    const secrets = this.#secrets;
    const accept = (socket: Duplex) => {
      const owner = entry.owner;
      this.#proxy.handle(socket, {
        sessionId: owner.sessionId,
        ownerId: owner.ownerId,
        settings: () => entry.owner.network,
        ...(secrets
          ? {
              secretsFor: async (host: string, port: number) => {
                const { ownerId, sessionId, secrets: names } = entry.owner;
                if (names.length === 0) return [];
                const granted = await secrets.granted(ownerId, sessionId, names);
                return granted.filter((s) => secretGoesTo(s.hosts, host, port));
              },
            }
          : {}),
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
    // The trust files first: a program started once the endpoint is known must find them.
    const trust = this.#trustFor(entry.owner);
    if (trust !== null) entry.trusted = await this.#installTrust(entry.sandbox, entry.owner.sessionId, trust);
    entry.listener = listener;
    void listener.ended.then(() => {
      if (entry.listener === listener) entry.listener = undefined;
    });
    return listener;
  }

  /**
   * Writes the trusted certificates into the sandbox (as the sandbox's user: a program there may change them, and
   * so only weaken its own connections). False, logged, when it failed: programs then get none of the variables
   * (naming a missing bundle would break all their TLS) and fail TLS only to hosts that need those CAs.
   */
  async #installTrust(sandbox: Sandbox, sessionId: string, pem: string): Promise<boolean> {
    const script = `umask 022; mkdir -p ${TRUST_DIR} && cat > ${TRUST_EXTRA} && { cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null; cat ${TRUST_EXTRA}; } > ${TRUST_BUNDLE}`;
    try {
      const result = await sandbox.exec(['/bin/sh', '-c', script], {
        stdin: pem,
        timeoutMs: 15_000,
        maxOutputBytes: 4_096,
      });
      if (result.exitCode !== 0) throw new Error(Buffer.from(result.stderr).toString().slice(0, 300));
      return true;
    } catch (error) {
      this.#logger.warn('egress: the trusted certificates could not be written into the sandbox', {
        sessionId,
        error: String(error),
      });
      return false;
    }
  }
}
