import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { IsolationBackend } from '@studio/isolation';
import { installSdk, removeSdkInstalls, sdkVersions } from '../apps/api/src/e2b/compat/harness.ts';
import { type Harness, startHarness } from './harness.ts';
import { onCleanup, type Row, ratioOf, type TargetId } from './report.ts';
import { interleaved, summarize } from './stats.ts';

/** The rows of this section and their targets (for rows skipped as a whole). */
export const e2bRows: [string, TargetId | undefined][] = [
  ['e2b: Sandbox.create → first commands.run output (SDK)', 'e2bCreate'],
];

/** A client process speaking the line protocol of bench/e2b-sdk-client.mjs and bench/e2b-studio-client.ts. */
interface LineClient {
  sample(): Promise<number>;
  close(): Promise<void>;
}

async function startClient(
  what: string,
  args: string[],
  options: { cwd?: string; env: NodeJS.ProcessEnv },
): Promise<LineClient> {
  const child: ChildProcess = spawn(process.execPath, args, {
    ...(options.cwd ? { cwd: options.cwd } : {}),
    env: options.env,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown>> => {
    const { value, done } = await lines.next();
    if (done) throw new Error(`${what} ended`);
    return JSON.parse(value) as Record<string, unknown>;
  };
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const close = onCleanup(async () => {
    child.stdin?.end(`${JSON.stringify({ op: 'exit' })}\n`);
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  });
  if ((await next()).ready !== true) throw new Error(`${what} did not start`);
  return {
    async sample() {
      child.stdin?.write(`${JSON.stringify({ op: 'sample' })}\n`);
      const r = await next();
      if (typeof r.ms !== 'number') throw new Error(`${what}: ${String(r.error ?? JSON.stringify(r))}`);
      return r.ms;
    },
    close,
  };
}

/**
 * Issue 21: what E2B compatibility costs. `Sandbox.create()` → the output of the first `commands.run('echo ok')`
 * through the unmodified `e2b` SDK (installed from the npm cache into a temp folder, envd through E2B_SANDBOX_URL),
 * beside @studio/client's `sessions.create` → first `exec.run` output of the same command line, each client in
 * its own process, interleaved in the same run on Docker (no warm pool: both cold).
 */
export async function benchE2b(options: { backend: IsolationBackend; quick: boolean }): Promise<Row[]> {
  const rounds = options.quick ? 3 : 12;
  const labels = { 'studio.test': 'bench-e2b' };
  const [h, sdk]: [Harness, Awaited<ReturnType<typeof installSdk>>] = await Promise.all([
    startHarness({
      backend: options.backend,
      labels,
      sessions: 1,
      env: { STUDIO_INSTANCE_ID: 'bench-e2b' },
    }),
    installSdk(sdkVersions().latest),
  ]);
  const removeInstalls = onCleanup(async () => removeSdkInstalls());
  try {
    const admin = h.clients[0] as Harness['clients'][number];
    const apiKey = (await admin.tokens.create.mutate({ name: 'bench-e2b' })).token;
    copyFileSync(
      fileURLToPath(new URL('./e2b-sdk-client.mjs', import.meta.url)),
      join(sdk.dir, 'client.mjs'),
    );
    const base = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' };
    const sdkClient = await startClient('the e2b SDK client', [join(sdk.dir, 'client.mjs')], {
      cwd: sdk.dir,
      env: {
        ...base,
        E2B_API_URL: `${h.t.url}/e2b`,
        E2B_SANDBOX_URL: `${h.t.url}/e2b/envd`,
        E2B_API_KEY: apiKey,
      },
    });
    const studioClient = await startClient(
      'the @studio/client client',
      [
        '--import',
        'tsx',
        fileURLToPath(new URL('./e2b-studio-client.ts', import.meta.url)),
        JSON.stringify({ url: h.t.url, token: apiKey }),
      ],
      { env: { ...process.env } },
    );
    try {
      const s = await interleaved(
        'e2b create → first output, SDK vs @studio/client',
        rounds,
        () => sdkClient.sample(),
        () => studioClient.sample(),
      );
      const ours = summarize(s.ours);
      const baseline = summarize(s.raw);
      return [
        {
          name: e2bRows[0]?.[0] as string,
          unit: 'ms',
          baselineName: '@studio/client sessions.create → first exec.run output',
          ours,
          baseline,
          ratio: ratioOf(ours, baseline),
          target: 'e2bCreate',
          note: `e2b ${sdk.version} from a temp install, envd by E2B_SANDBOX_URL; both as the same API token, bash -l -c`,
        },
      ];
    } finally {
      await sdkClient.close();
      await studioClient.close();
    }
  } finally {
    await h.close();
    await removeInstalls();
  }
}
