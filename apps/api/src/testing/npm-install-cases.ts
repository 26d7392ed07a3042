import { execFile } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { promisify } from 'node:util';
import type { StudioClient } from '@studio/client';
import { expect, it } from 'vitest';
import type { SessionEvent } from '../realtime/event-bus.ts';
import type { startTestApi, TestApi } from './api-fixture.ts';

type TestApiOptions = Parameters<typeof startTestApi>[0];

// Issue 18's "done when": in a sandbox whose allowlist holds the host of the registry this machine's npm names,
// `npm install` of a small package succeeds through the egress proxy; with the list empty it fails, and the
// session's events show the refused connection. The registry is the real one (read at test time, never written
// here), so the files using these cases skip, with the reason, when the host cannot reach it; in CI they fail.

/** A package with no dependencies, and two of its versions (one per install, so no cache can answer). */
const PACKAGE = 'is-number';
const [FIRST, SECOND] = ['7.0.0', '6.0.0'] as const;

const run = promisify(execFile);
/** What went wrong, in one line: a command's first line of stderr, or the error's message. */
const oneLine = (error: unknown) =>
  (String((error as { stderr?: unknown }).stderr ?? '').trim() || (error as Error).message).split('\n')[0];

/** The registry the host's npm uses, as the cases need it. */
export interface Registry {
  /** The allowlist entry: the registry URL's host (with its port when not the default). */
  entry: string;
  hostname: string;
  /** Its addresses as this host resolves them: the proxy may dial them even when they are not public. */
  addresses: string[];
}

/** The registry `npm config get registry` names, or why the host's npm cannot reach it. */
export async function findRegistry(): Promise<Registry | string> {
  let url: URL;
  try {
    url = new URL((await run('npm', ['config', 'get', 'registry'], { timeout: 30_000 })).stdout.trim());
  } catch (error) {
    return `npm config get registry failed: ${oneLine(error)}`;
  }
  const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (isIP(hostname)) return `the npm registry is an IP address (${hostname}); allowlists name hosts`;
  try {
    const addresses = (await lookup(hostname, { all: true })).map((a) => a.address);
    await run('npm', ['view', `${PACKAGE}@${FIRST}`, 'version', '--fetch-retries=0'], { timeout: 60_000 });
    return { entry: url.host, hostname, addresses };
  } catch (error) {
    return `the npm registry ${url.host} is not reachable from this host: ${oneLine(error)}`;
  }
}

/**
 * The API options an operator of this machine would set: the registry's addresses made reachable (they may sit in
 * address space the egress policy treats as not public) and the host's CAs trusted (this machine's outbound TLS
 * may pass an intercepting proxy whose CA only the host's trust store holds), as `STUDIO_EGRESS_CA_FILE` does.
 */
export function registryApiOptions(registry: Registry | undefined): Pick<TestApiOptions, 'env' | 'egress'> {
  const bundle = [process.env.NODE_EXTRA_CA_CERTS, '/etc/ssl/certs/ca-certificates.crt'].find(
    (p): p is string => p !== undefined && p !== '' && existsSync(p),
  );
  return {
    env: {
      STUDIO_POLICY: JSON.stringify({
        egress: {
          reachableNets: (registry?.addresses ?? []).map((a) => `${a}/${isIP(a) === 6 ? 128 : 32}`),
        },
      }),
    },
    egress: bundle === undefined ? {} : { extraCaPem: readFileSync(bundle, 'utf8') },
  };
}

/** What the cases need from a test file: its API, a signed-in client and the backend sessions are made on. */
export interface NpmInstallContext {
  api: TestApi;
  client: StudioClient;
  backend: 'docker' | 'gvisor';
}

/** The two cases, against the registry `registry` (found by {@link findRegistry}). */
export function npmInstallCases(get: () => NpmInstallContext, registry: Registry): void {
  let sessionId = '';
  const events: SessionEvent[] = [];
  const stop = new AbortController();

  /** `npm install PACKAGE@version` in a fresh folder of the workspace, with a cache of its own. */
  const npmInstall = async (folder: string, version: string, ...flags: string[]) => {
    const { client } = get();
    await client.files.write.mutate({
      sessionId,
      path: `${folder}/package.json`,
      content: JSON.stringify({ name: folder, version: '1.0.0', private: true }),
      createParents: true,
    });
    const r = await client.exec.run.mutate({
      sessionId,
      command: [
        'npm',
        'install',
        '--no-audit',
        '--no-fund',
        `--cache=/tmp/npm-cache-${folder}`,
        ...flags,
        `${PACKAGE}@${version}`,
      ],
      cwd: folder,
      timeoutMs: 240_000,
    });
    return { ...r, output: `exit ${r.exitCode}\n${r.stdout}${r.stderr}` };
  };
  const egress = (allowed: boolean) =>
    events.filter((e) => e.type === 'egress' && e.allowed === allowed && e.host === registry.hostname);

  it('setup: a session whose allowlist holds the registry', async () => {
    const { api, client, backend } = get();
    const created = await client.sessions.create.mutate({
      image: 'studio-sandbox:latest',
      backend,
      network: { mode: 'allowlist', allow: [registry.entry] },
    });
    sessionId = created.id;
    void (async () => {
      for await (const e of api.app.deps.events.subscribe(sessionId, undefined, stop.signal)) {
        if (e.type !== 'gap') events.push(e);
      }
    })();
  });

  it('installs a package from the registry on the allowlist', { timeout: 300_000 }, async () => {
    const { client } = get();
    const r = await npmInstall('first', FIRST);
    expect(r.exitCode, r.output).toBe(0);
    const installed = await client.files.read.query({
      sessionId,
      path: `first/node_modules/${PACKAGE}/package.json`,
    });
    expect(JSON.parse(installed.content)).toMatchObject({ name: PACKAGE, version: FIRST });
    await client.files.read.query({ sessionId, path: `first/node_modules/${PACKAGE}/index.js` });
    await expect.poll(() => egress(true).length).toBeGreaterThan(0);
    expect(egress(false)).toEqual([]);
  });

  it('fails with EGRESS_DENIED once the allowlist is empty', { timeout: 300_000 }, async () => {
    const { api, client } = get();
    const changed = await client.sessions.setNetwork.mutate({
      sessionId,
      network: { mode: 'allowlist', allow: [] },
    });
    expect(changed.network).toEqual({ mode: 'allowlist', allow: [] });
    const r = await npmInstall('second', SECOND, '--fetch-retries=0');
    expect(r.exitCode, r.output).not.toBe(0);
    // npm prints the proxy's status to its CONNECT (403), not the body (EGRESS_DENIED (not_allowed): …).
    expect(r.stderr).toContain('403');
    await expect(
      client.files.read.query({ sessionId, path: `second/node_modules/${PACKAGE}/package.json` }),
    ).rejects.toThrow();
    await expect.poll(() => egress(false).length).toBeGreaterThan(0);
    expect(egress(false)[0]).toMatchObject({ actor: { kind: 'sandbox' }, reason: 'not_allowed' });
    const audit = await api.app.deps.store.listAudit({ action: 'egress.connection', limit: 1000 });
    expect(
      audit.filter(
        (a) => a.target === sessionId && a.outcome === 'denied' && a.details.host === registry.hostname,
      ),
    ).not.toEqual([]);
    await expect(
      client.sessions.checkEgress.query({ sessionId, host: registry.hostname }),
    ).rejects.toMatchObject({ code: 'EGRESS_DENIED' });
  });

  it('cleanup', async () => {
    stop.abort();
    if (sessionId) await get().client.sessions.destroy.mutate({ sessionId });
  });
}
