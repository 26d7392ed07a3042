import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createStudioClient, type StudioClient } from '@studio/client';
import type { IsolationBackend } from '@studio/isolation';
import { createRateLimiter } from '@studio/policy';
import { ADMIN_PASSWORD, startTestApi, type TestApi } from '../../testing/api-fixture.ts';
import { sessionIdOfSandbox } from '../e2b-ids.ts';
import { startTlsFront, type TlsFront } from './tls-front.ts';

// Issue 21's test harness: the unmodified `e2b` SDK, installed from the npm cache into a folder outside the
// repository exactly as docs/e2b.md tells users (`npm install e2b`, then E2B_API_URL, E2B_SANDBOX_URL or the
// create response's domain, E2B_API_KEY), drives a Studio started here in-process on a real backend. The SDK
// runs in its own Node process (scenario.mjs, one case a process) and reports one JSON line per case.

const run = promisify(execFile);
const HERE = fileURLToPath(new URL('.', import.meta.url));
const REPO_ROOT = realpathSync(fileURLToPath(new URL('../../../../../', import.meta.url)));
const SCENARIO = join(HERE, 'scenario.mjs');
/** The preload that stands in for wildcard DNS (`*.e2b.test` → 127.0.0.1). */
export const DNS_PATCH = join(HERE, 'dns-patch.cjs');
/** The domain sandboxes are reached on by host name (preview listener behind the TLS front). */
export const E2B_TEST_DOMAIN = 'e2b.test';

/** The SDK versions the suite drives: the current one, and the older line (2.10) still in use. */
export function sdkVersions(): { latest: string; older: string } {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'apps/api/package.json'), 'utf8')) as {
    devDependencies: Record<string, string>;
  };
  const latest = pkg.devDependencies.e2b;
  const older = /^npm:e2b@(.+)$/.exec(pkg.devDependencies['e2b-2-10'] ?? '')?.[1];
  if (!latest || !older) throw new Error('apps/api/package.json names no e2b / e2b-2-10 devDependencies');
  return { latest, older };
}

/** The SDK installed in a temporary folder outside the repository. */
export interface SdkInstall {
  version: string;
  dir: string;
}

// npm as a user runs it: none of the variables `npx`/`npm run` set for this repository (npm_config_local_prefix
// would point the install back into the repo), only where its cache and configuration are.
function npmEnv(): NodeJS.ProcessEnv {
  const keep = /^npm_config_(cache|userconfig|globalconfig|cafile|registry)$/i;
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) && !keep.test(k)) continue;
    if (/^(E2B_|INIT_CWD$)/.test(k)) continue;
    env[k] = v;
  }
  return env;
}

const installs = new Map<string, Promise<SdkInstall>>();
const installDirs: string[] = [];

/**
 * `npm install e2b@<version>` in a fresh folder under the OS temp dir (from the npm cache: `--prefer-offline`),
 * once per version per test process; the scenario script is copied in so `import 'e2b'` resolves there.
 */
export function installSdk(version: string): Promise<SdkInstall> {
  let p = installs.get(version);
  if (!p) {
    p = (async () => {
      const dir = realpathSync(mkdtempSync(join(tmpdir(), `studio-e2b-sdk-${version}-`)));
      installDirs.push(dir);
      if (!relative(REPO_ROOT, dir).startsWith('..')) throw new Error(`${dir} is inside the repository`);
      writeFileSync(
        join(dir, 'package.json'),
        `${JSON.stringify({ name: 'e2b-compat-client', private: true, type: 'module' }, null, 2)}\n`,
      );
      await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', `e2b@${version}`], {
        cwd: dir,
        env: npmEnv(),
        timeout: 180_000,
      }).catch((error: Error & { stderr?: string }) => {
        throw new Error(`npm install e2b@${version} failed in ${dir}: ${error.stderr || error.message}`);
      });
      copyFileSync(SCENARIO, join(dir, 'scenario.mjs'));
      return { version, dir };
    })();
    p.catch(() => installs.delete(version));
    installs.set(version, p);
  }
  return p;
}

/** Removes the temporary SDK installs of this process. */
export function removeSdkInstalls(): void {
  for (const dir of installDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  installs.clear();
}

/** How the SDK reaches envd: one URL routed by the `E2b-Sandbox-Id` header, or host names over TLS. */
export type Routing = 'header' | 'host';

/** A question the scenario asks the test (a step only the IDE's side can take), and what the test answers. */
export interface Ask {
  ask: string;
  sandboxId?: string;
}

/** One case's outcome, as the scenario printed it. */
export interface CaseResult {
  case: string;
  ok: boolean;
  error?: string;
  /** What the case could not check on this SDK version or backend, and why. */
  notes?: string[];
  /** The scenario's stderr (the SDK's own logging), for a failure's report. */
  stderr: string;
}

/** Options of {@link CompatHarness.runCase}. */
export interface RunCaseOptions {
  routing: Routing;
  /** Whether the backend keeps a paused sandbox's memory (gVisor). */
  memory: boolean;
  timeoutMs?: number;
}

/** Studio with E2B enabled on a real backend, a TLS front, API tokens, and SDK installs. */
export interface CompatHarness {
  api: TestApi;
  /** The admin's API token (`sst_…`): the SDK's E2B_API_KEY. */
  apiKey: string;
  /** Another user's API token: sees none of the admin's sandboxes. */
  otherApiKey: string;
  /** The admin's login (a person in the IDE), for take-control. */
  admin: StudioClient;
  /** `e2b.test:<port of the TLS front>`: the create response's `domain`. */
  e2bDomain: string;
  tls: TlsFront;
  /** Runs one case of scenario.mjs with `sdk`; resolves with its result (never rejects for a failed case). */
  runCase(sdk: SdkInstall, name: string, options: RunCaseOptions): Promise<CaseResult>;
  close(): Promise<void>;
}

/** Options of {@link startCompatHarness}. */
export interface CompatHarnessOptions {
  backend: IsolationBackend;
  /** Labels of the sandboxes this run makes (all destroyed by `close`). */
  labels: Record<string, string>;
  env?: Record<string, string>;
}

/**
 * Starts the TLS front, then Studio (previews on host names under `e2b.test`, behind that front; E2B's domain
 * `e2b.test:<front port>`), signs the admin in and makes the API tokens the SDK uses.
 */
export async function startCompatHarness(options: CompatHarnessOptions): Promise<CompatHarness> {
  const scratch = realpathSync(mkdtempSync(join(tmpdir(), 'studio-e2b-compat-')));
  const tls = await startTlsFront({ domain: E2B_TEST_DOMAIN, dir: scratch });
  const e2bDomain = `${E2B_TEST_DOMAIN}:${tls.port}`;
  let api: TestApi | undefined;
  const destroyLabelled = async () => {
    for (const s of await options.backend.list({ labels: options.labels }).catch(() => []))
      await options.backend.destroy(s.id).catch(() => undefined);
  };
  try {
    api = await startTestApi({
      backends: [options.backend],
      labels: options.labels,
      // The suite creates a few dozen sandboxes in minutes: not what the per-user create limit is about.
      createLimiter: createRateLimiter({ limit: 10_000, windowMs: 60_000 }),
      env: {
        STUDIO_PREVIEW_DOMAIN: E2B_TEST_DOMAIN,
        STUDIO_PREVIEW_SCHEME: 'https',
        // Required beside a preview domain; the API's own origin is allowed anyway.
        STUDIO_ORIGINS: 'http://127.0.0.1',
        STUDIO_E2B_DOMAIN: e2bDomain,
        ...options.env,
      },
    });
    const previewUrl = api.api.previewUrl;
    if (!previewUrl) throw new Error('the preview listener is off (STUDIO_PREVIEW_PORT)');
    tls.forwardTo(Number(new URL(previewUrl).port));
    const login = await api.login('admin', ADMIN_PASSWORD);
    const admin = createStudioClient({ url: api.url, token: login });
    const apiKey = (await admin.tokens.create.mutate({ name: 'e2b-compat' })).token;
    await admin.users.create.mutate({ username: 'other', password: 'other-password-123' });
    const other = createStudioClient({ url: api.url, token: await api.login('other', 'other-password-123') });
    const otherApiKey = (await other.tokens.create.mutate({ name: 'e2b-compat-other' })).token;
    const started = api;

    const answer = async (q: Ask): Promise<Record<string, unknown>> => {
      if (q.ask === 'take-control' || q.ask === 'release-control') {
        const sessionId = await sessionOf(admin, q.sandboxId ?? '');
        if (q.ask === 'take-control') await admin.sessions.takeControl.mutate({ sessionId });
        else await admin.sessions.releaseControl.mutate({ sessionId });
        return { ok: true, sessionId };
      }
      throw new Error(`unknown question ${q.ask}`);
    };

    return {
      api: started,
      apiKey,
      otherApiKey,
      admin,
      e2bDomain,
      tls,
      runCase: (sdk, name, o) =>
        runScenario(sdk, name, {
          ...o,
          env: {
            E2B_API_URL: `${started.url}/e2b`,
            E2B_API_KEY: apiKey,
            ...(o.routing === 'header' ? { E2B_SANDBOX_URL: `${started.url}/e2b/envd` } : {}),
            NODE_EXTRA_CA_CERTS: tls.caFile,
            E2B_COMPAT_DNS_DOMAIN: E2B_TEST_DOMAIN,
            E2B_COMPAT_DOMAIN: e2bDomain,
            E2B_COMPAT_OTHER_KEY: otherApiKey,
            E2B_COMPAT_MEMORY: o.memory ? '1' : '0',
            E2B_COMPAT_ROUTING: o.routing,
            E2B_COMPAT_VERSION: sdk.version,
          },
          answer,
        }),
      async close() {
        await destroyLabelled();
        await started.close().catch(() => undefined);
        await destroyLabelled();
        await tls.close();
        rmSync(scratch, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await api?.close().catch(() => undefined);
    await destroyLabelled();
    await tls.close();
    rmSync(scratch, { recursive: true, force: true });
    throw error;
  }
}

/** The Studio session behind an E2B sandbox id (one to one: e2b-ids.ts), checked against the admin's list. */
async function sessionOf(admin: StudioClient, sandboxId: string): Promise<string> {
  const sessionId = sessionIdOfSandbox(sandboxId);
  if (sessionId === undefined) throw new Error(`not a sandbox id: ${sandboxId}`);
  const sessions = await admin.sessions.list.query();
  if (!sessions.some((s) => s.id === sessionId))
    throw new Error(`the admin has no session ${sessionId} (${sandboxId})`);
  return sessionId;
}

/** The process environment of the SDK: nothing of this repository's, only what a user's shell would have. */
function clientEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', ...extra };
  if (process.env.HOME) env.HOME = process.env.HOME;
  if (process.env.TMPDIR) env.TMPDIR = process.env.TMPDIR;
  return env;
}

function runScenario(
  sdk: SdkInstall,
  name: string,
  options: RunCaseOptions & {
    env: Record<string, string>;
    answer(q: Ask): Promise<Record<string, unknown>>;
  },
): Promise<CaseResult> {
  const timeoutMs = options.timeoutMs ?? 240_000;
  return new Promise((resolve) => {
    const child: ChildProcess = spawn(
      process.execPath,
      ['-r', DNS_PATCH, join(sdk.dir, 'scenario.mjs'), name],
      { cwd: sdk.dir, env: clientEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let stderr = '';
    let result: Omit<CaseResult, 'stderr'> | undefined;
    const output: string[] = [];
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      stderr = (stderr + s).slice(-8000);
    });
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      output.push(line);
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (typeof msg.ask === 'string') {
        options.answer(msg as unknown as Ask).then(
          (reply) => child.stdin?.write(`${JSON.stringify(reply)}\n`),
          (error: Error) => child.stdin?.write(`${JSON.stringify({ error: error.message })}\n`),
        );
      } else if (msg.case === name) {
        result = msg as unknown as Omit<CaseResult, 'stderr'>;
      }
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      result = {
        case: name,
        ok: false,
        error: `the scenario did not finish within ${timeoutMs / 1000} s (last output: ${output.slice(-3).join(' | ') || 'none'})`,
      };
    }, timeoutMs);
    // 'close': after the exit and the end of its output (the last line may come after the exit).
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        ...(result ?? {
          case: name,
          ok: false,
          error: `the scenario exited (${signal ?? code}) without a result for ${name}; stdout: ${output.slice(-5).join(' | ') || 'none'}`,
        }),
        stderr,
      });
    });
  });
}
