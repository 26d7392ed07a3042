import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createCertificateAuthority, issueServerCertificate, type PemPair } from '../egress/certificates.ts';

/** The test network: the host's end of the veth pair, and the servers' address. Documentation space (RFC 5737). */
export const EGRESS_NET = Object.freeze({
  cidr: '198.51.100.0/24',
  host: '198.51.100.1',
  server: '198.51.100.2',
});

/** One line the test server wrote: a TCP connection or a request it received. */
export interface ServerHit {
  kind: 'connection' | 'request';
  port?: number;
  scheme?: 'http' | 'https';
  host?: string | null;
  url?: string;
  headers?: Record<string, string>;
}

/** A running test network (see {@link startEgressTestNet}). */
export interface EgressTestNet {
  /** The test CA whose certificate the servers present (for `allowed.test`, `other.test`). */
  ca: PemPair;
  /** The resolver the API's egress proxy gets: the test's names, nothing else. */
  resolve(host: string): Promise<string[]>;
  /** Everything the servers saw since the start (or the last `clear()`). */
  hits(): ServerHit[];
  clear(): void;
  close(): Promise<void>;
}

/** Why the egress network tests cannot run here (undefined: they can): they need root and `ip`. */
export function egressNetSkip(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to make a network namespace';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return "needs iproute2's ip";
  }
  return undefined;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/**
 * Servers of the project's own, reachable from the host only as the egress proxy would reach the internet: a
 * network namespace joined to the host by a veth pair (host 198.51.100.1, servers 198.51.100.2), with HTTP on 80
 * and HTTPS on 443. Names resolve through {@link EgressTestNet.resolve}: `allowed.test` and `other.test` to the
 * servers, `rebind.test` to 127.0.0.1, `mixed.test` to the servers and 10.0.0.1, `self.test` to the host's end.
 * The API must be started with `reachableNets: ['198.51.100.0/24']` (it is documentation space, so not public).
 * `net` moves it to other addresses (the names follow), so that two users on one host (tests and the bench) do
 * not clash over the same routes.
 */
export async function startEgressTestNet(
  net: { cidr: string; host: string; server: string } = EGRESS_NET,
): Promise<EgressTestNet> {
  const prefix = net.cidr.split('/')[1] ?? '24';
  const tag = `${process.pid % 100_000}${Math.floor(Math.random() * 1000)}`;
  const ns = `studio-egress-${tag}`;
  const hostIf = `seh${tag}`;
  const nsIf = `sen${tag}`;
  const dir = mkdtempSync(join(tmpdir(), 'studio-egress-'));
  const ca = await createCertificateAuthority('Studio egress test CA');
  const leaf = await issueServerCertificate(ca, ['allowed.test', 'other.test']);
  writeFileSync(join(dir, 'cert.pem'), leaf.certPem);
  writeFileSync(join(dir, 'key.pem'), leaf.keyPem);
  const teardown = () => {
    try {
      ip('link', 'del', hostIf);
    } catch {
      // gone with the namespace
    }
    try {
      ip('netns', 'del', ns);
    } catch {
      // never made
    }
    rmSync(dir, { recursive: true, force: true });
  };
  let server: ChildProcess | undefined;
  try {
    ip('netns', 'add', ns);
    ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf);
    ip('link', 'set', nsIf, 'netns', ns);
    ip('addr', 'add', `${net.host}/${prefix}`, 'dev', hostIf);
    ip('link', 'set', hostIf, 'up');
    ip('-n', ns, 'addr', 'add', `${net.server}/${prefix}`, 'dev', nsIf);
    ip('-n', ns, 'link', 'set', nsIf, 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    const script = fileURLToPath(new URL('./egress-test-server.mjs', import.meta.url));
    server = spawn(
      'nsenter',
      [`--net=/run/netns/${ns}`, process.execPath, script, join(dir, 'cert.pem'), join(dir, 'key.pem')],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const hits: ServerHit[] = [];
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('the egress test server did not start in 10 s')),
        10_000,
      );
      server?.once('exit', (code) => reject(new Error(`the egress test server exited (${code})`)));
      createInterface({ input: server?.stdout as NodeJS.ReadableStream }).on('line', (line) => {
        const parsed = JSON.parse(line) as ServerHit | { kind: 'ready' };
        if (parsed.kind === 'ready') {
          clearTimeout(timer);
          resolve();
        } else hits.push(parsed);
      });
    });
    await ready;
    const names: Record<string, string[]> = {
      'allowed.test': [net.server],
      'other.test': [net.server],
      'rebind.test': ['127.0.0.1'],
      'mixed.test': [net.server, '10.0.0.1'],
      'self.test': [net.host],
    };
    const child = server;
    return {
      ca,
      resolve: async (host) => {
        const found = names[host];
        if (!found) throw new Error(`${host}: not found`);
        return found;
      },
      hits: () => [...hits],
      clear: () => {
        hits.length = 0;
      },
      close: async () => {
        if (child.exitCode === null) {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await exited;
        }
        teardown();
      },
    };
  } catch (error) {
    server?.kill('SIGKILL');
    teardown();
    throw error;
  }
}
