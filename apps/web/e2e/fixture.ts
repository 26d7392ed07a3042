import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createStudioClient, loginStudioClient, type StudioClient } from '@studio/client';
import { ProxyServer } from 'http-proxy-3';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { ensureBuild } from '../scripts/build.ts';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const TSX = join(REPO_ROOT, 'node_modules', '.bin', 'tsx');
export const CHROMIUM = '/usr/bin/chromium';
export const SCREENSHOTS = fileURLToPath(new URL('./screenshots/', import.meta.url));
export const ADMIN_PASSWORD = 'e2e-admin-password-0123';
const IMAGE = 'studio-sandbox:latest';

const inCi = process.env.CI === 'true' || process.env.CI === '1';

/** Why the e2e suite cannot run here (undefined: it can). In CI a missing prerequisite throws instead. */
export function missingPrerequisite(): string | undefined {
  let reason: string | undefined;
  if (!existsSync(CHROMIUM)) reason = `chromium not found at ${CHROMIUM} (apt-get install chromium)`;
  else {
    try {
      execFileSync('docker', ['image', 'inspect', IMAGE], { stdio: 'ignore', timeout: 20_000 });
    } catch {
      reason = `Docker or the ${IMAGE} image is unavailable (bash infra/setup-runtimes.sh)`;
    }
  }
  if (reason && inCi) throw new Error(`web e2e prerequisites are required in CI: ${reason}`);
  return reason;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function waitFor(url: string, child: ChildProcess, what: string, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited during start-up (code ${child.exitCode})`);
    try {
      const res = await fetch(url);
      if (res.status < 500) return;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`${what} did not answer ${url} in time`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Host names of the production-shaped setup: the IDE and its previews on two registrable domains. */
export const PRODUCTION_HOSTS = { ide: 'studio.test', previewDomain: 'studio-preview.test' } as const;

/** Options for {@link startE2E}. */
export interface E2EOptions {
  /**
   * `local` (default): the IDE on http://127.0.0.1, previews on `*.localhost`, as `npm start`.
   * `production`: as behind Traefik: https://studio.test for the IDE (its /trpc and /terminal routed straight to
   * the API) and https://<port>-<label>.studio-preview.test for previews, through a TLS proxy in this process
   * that routes by Host and forwards the headers Traefik sends; chromium maps every `*.test` name to it.
   */
  mode?: 'local' | 'production';
}

export interface E2E {
  mode: 'local' | 'production';
  /** The IDE's origin as the browser sees it. */
  webUrl: string;
  /** The API, direct (for Node clients). */
  apiUrl: string;
  /** The preview origins as a CSP source (`http://*.localhost:<port>`, `https://*.studio-preview.test`). */
  previewOrigin: string;
  /** A preview URL of this setup: `<port>-<16 hex>.<domain>[:<port>]`. */
  previewUrlPattern: RegExp;
  context: BrowserContext;
  page: Page;
  /** A second client of the same user (a login by bearer token), as another tab or tool would be. */
  client: StudioClient;
  /** Every dialog the page opened (alert/confirm/prompt): the XSS checks expect none. */
  dialogs: string[];
  shot(name: string): Promise<void>;
  /** Stops and starts the web server on the same port: every socket and SSE stream of the page drops. */
  restartWeb(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts the real API (child process, free ports, temp data dir, Docker backend, sessions limited to 2 per
 * user so the limit is quick to reach), builds the IDE if its sources changed, starts the web server, and
 * opens chromium at 1280×800 with a fresh profile.
 */
export async function startE2E(options: E2EOptions = {}): Promise<E2E> {
  const mode = options.mode ?? 'local';
  const production = mode === 'production';
  const [apiPort, previewPort, webPort] = [await freePort(), await freePort(), await freePort()];
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const webDirect = `http://127.0.0.1:${webPort}`;
  const webUrl = production ? `https://${PRODUCTION_HOSTS.ide}` : webDirect;
  const previewOrigin = production
    ? `https://*.${PRODUCTION_HOSTS.previewDomain}`
    : `http://*.localhost:${previewPort}`;
  const previewUrlPattern = production
    ? new RegExp(`^https://\\d+-[0-9a-f]{16}\\.${PRODUCTION_HOSTS.previewDomain.replace('.', '\\.')}/`)
    : new RegExp(`^http://\\d+-[0-9a-f]{16}\\.localhost:${previewPort}/`);
  const dataDir = mkdtempSync(join(tmpdir(), 'studio-web-e2e-'));
  const profile = mkdtempSync(join(tmpdir(), 'studio-web-e2e-chromium-'));
  const instanceId = `web-e2e-${process.pid}`;
  mkdirSync(SCREENSHOTS, { recursive: true });
  const quiet = process.env.STUDIO_TEST_LOG === '1' ? 'inherit' : 'ignore';
  let api: ChildProcess | undefined;
  let web: ChildProcess | undefined;
  let context: BrowserContext | undefined;
  let edge: { close(): Promise<void>; port: number } | undefined;
  const cleanup = async () => {
    await context?.close().catch(() => undefined);
    await edge?.close();
    await stop(web);
    await stop(api);
    // Belt and braces: nothing this run created may outlive it.
    try {
      const ids = execFileSync('docker', ['ps', '-aq', '--filter', `label=studio.instance=${instanceId}`], {
        encoding: 'utf8',
      }).trim();
      if (ids) execFileSync('docker', ['rm', '-f', ...ids.split('\n')], { stdio: 'ignore' });
    } catch {
      // docker gone: nothing to remove
    }
    rmSync(profile, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    ensureBuild();
    api = spawn(TSX, [join(REPO_ROOT, 'apps/api/src/main.ts')], {
      env: {
        ...process.env,
        STUDIO_HOST: '127.0.0.1',
        STUDIO_PORT: String(apiPort),
        STUDIO_PREVIEW_PORT: String(previewPort),
        STUDIO_DATA_DIR: dataDir,
        STUDIO_ADMIN_PASSWORD: ADMIN_PASSWORD,
        STUDIO_JWT_SECRET: 'web-e2e-secret-0123456789-abcdefghijklmnop',
        STUDIO_INSTANCE_ID: instanceId,
        STUDIO_BACKENDS: 'docker',
        STUDIO_WARM_POOL: '0',
        STUDIO_ORIGINS: webUrl,
        ...(production
          ? { STUDIO_PREVIEW_DOMAIN: PRODUCTION_HOSTS.previewDomain, STUDIO_TRUST_PROXY: 'true' }
          : {}),
        STUDIO_POLICY: JSON.stringify({ maxLiveSessionsPerUser: 2 }),
        STUDIO_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', quiet, quiet],
    });
    await waitFor(`${apiUrl}/healthz`, api, 'the API');
    const startWeb = async () => {
      web = spawn(TSX, [join(REPO_ROOT, 'apps/web/server.ts')], {
        env: {
          ...process.env,
          STUDIO_WEB_HOST: '127.0.0.1',
          STUDIO_WEB_PORT: String(webPort),
          STUDIO_API_URL: apiUrl,
          STUDIO_PREVIEW_ORIGIN: previewOrigin,
        },
        stdio: ['ignore', quiet, quiet],
      });
      await waitFor(`${webDirect}/login`, web, 'the web server');
    };
    await startWeb();
    if (production) edge = await startEdge(dataDir, { api: apiPort, preview: previewPort, web: webPort });
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        ...(edge
          ? ['--ignore-certificate-errors', `--host-resolver-rules=MAP *.test:443 127.0.0.1:${edge.port}`]
          : []),
      ],
      viewport: { width: 1280, height: 800 },
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(`${d.type()}: ${d.message()}`);
      void d.dismiss().catch(() => undefined);
    });
    const { token } = await loginStudioClient({ url: apiUrl, username: 'admin', password: ADMIN_PASSWORD });
    const client = createStudioClient({ url: apiUrl, token });
    let n = 0;
    const ctx = context;
    return {
      mode,
      webUrl,
      apiUrl,
      previewOrigin,
      previewUrlPattern,
      context: ctx,
      page,
      client,
      dialogs,
      async restartWeb() {
        await stop(web);
        await startWeb();
      },
      async shot(name) {
        n++;
        await page.screenshot({ path: join(SCREENSHOTS, `${String(n).padStart(2, '0')}-${name}.png`) });
      },
      async close() {
        // Destroy every session this run created, through the API, before stopping it.
        const sessions = await client.sessions.list.query().catch(() => []);
        for (const s of sessions)
          await client.sessions.destroy.mutate({ sessionId: s.id }).catch(() => undefined);
        await cleanup();
      },
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/**
 * A stand-in for Traefik (infra/traefik/dynamic/studio.yml.in): TLS on one port for every `*.test` name (a
 * self-signed certificate; chromium runs with --ignore-certificate-errors), routing by Host as the real routers
 * do: the IDE host's /trpc/ and /terminal to the API, the rest of it to the web server, preview hosts to the
 * preview proxy. Host passes unchanged and X-Forwarded-For/-Proto/-Host are set, as Traefik sends them.
 */
async function startEdge(
  dir: string,
  ports: { api: number; preview: number; web: number },
): Promise<{ close(): Promise<void>; port: number }> {
  const key = join(dir, 'edge.key');
  const cert = join(dir, 'edge.crt');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-keyout',
      key,
      '-out',
      cert,
      '-subj',
      `/CN=${PRODUCTION_HOSTS.ide}`,
      '-addext',
      `subjectAltName=DNS:${PRODUCTION_HOSTS.ide},DNS:*.${PRODUCTION_HOSTS.previewDomain}`,
    ],
    { stdio: 'ignore' },
  );
  const proxy = new ProxyServer({ xfwd: true, ws: true });
  proxy.on('error', (_error, _req, res) => {
    if ('writeHead' in res && !res.headersSent) res.writeHead(502);
    res.end();
  });
  const route = (host: string | undefined, url: string | undefined): string | null => {
    const name = (host ?? '').replace(/:\d+$/, '');
    const path = (url ?? '/').split('?')[0] ?? '/';
    if (name === PRODUCTION_HOSTS.ide) {
      const api = path.startsWith('/trpc/') || path === '/terminal';
      return `http://127.0.0.1:${api ? ports.api : ports.web}`;
    }
    if (/^[^.]+\./.test(name) && name.endsWith(`.${PRODUCTION_HOSTS.previewDomain}`)) {
      return name.split('.').length === PRODUCTION_HOSTS.previewDomain.split('.').length + 1
        ? `http://127.0.0.1:${ports.preview}`
        : null;
    }
    return null;
  };
  const server: HttpsServer = createHttpsServer(
    { key: readFileSync(key), cert: readFileSync(cert) },
    (req, res) => {
      const target = route(req.headers.host, req.url);
      if (target === null) {
        res.writeHead(404);
        res.end('no router');
        return;
      }
      req.headers['x-forwarded-host'] = req.headers.host ?? '';
      proxy.web(req, res, { target });
    },
  );
  server.on('upgrade', (req, socket, head) => {
    const target = route(req.headers.host, req.url);
    if (target === null) {
      socket.destroy();
      return;
    }
    proxy.ws(req, socket, head, { target });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Polls `check` every 100 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function until(
  check: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
