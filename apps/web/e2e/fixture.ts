import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createStudioClient, loginStudioClient, type StudioClient } from '@studio/client';
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

export interface E2E {
  webUrl: string;
  apiUrl: string;
  previewOrigin: string;
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
export async function startE2E(): Promise<E2E> {
  const [apiPort, previewPort, webPort] = [await freePort(), await freePort(), await freePort()];
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const webUrl = `http://127.0.0.1:${webPort}`;
  const previewOrigin = `http://127.0.0.1:${previewPort}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'studio-web-e2e-'));
  const profile = mkdtempSync(join(tmpdir(), 'studio-web-e2e-chromium-'));
  const instanceId = `web-e2e-${process.pid}`;
  mkdirSync(SCREENSHOTS, { recursive: true });
  const quiet = process.env.STUDIO_TEST_LOG === '1' ? 'inherit' : 'ignore';
  let api: ChildProcess | undefined;
  let web: ChildProcess | undefined;
  let context: BrowserContext | undefined;
  const cleanup = async () => {
    await context?.close().catch(() => undefined);
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
      await waitFor(`${webUrl}/login`, web, 'the web server');
    };
    await startWeb();
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
      webUrl,
      apiUrl,
      previewOrigin,
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
