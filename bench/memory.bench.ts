import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type createStudioClient, loginStudioClient } from '@studio/client';
import { build } from 'esbuild';
import WebSocket from 'ws';
import { buildApi } from '../apps/api/scripts/build.ts';
import { SESSIONS_PER_USER } from './harness.ts';
import { onCleanup, type Row } from './report.ts';
import { sleep, summarize } from './stats.ts';

// Issue 17, item 6: the API's own resident memory, as `npm start` runs it (node on the bundle of src/main.ts,
// PGlite in a data dir), idle and with 20 sessions, beside a bare node process that opens a fresh store the same
// way with the same code (@studio/db's openDb, bundled the same way) in the same run; then an exec loop, whose RSS is
// read every few seconds to show whether it grows.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const IMAGE = process.env.STUDIO_SANDBOX_IMAGE ?? 'studio-sandbox:latest';
const PASSWORD = 'bench-memory-admin-password';
const METRICS_TOKEN = 'bench-memory-metrics-token-0123456789abcdef';

/** The API's V8 heap and external (ArrayBuffer, WebAssembly) memory in MiB, from its own /metrics. */
async function processMemory(url: string): Promise<{ heap: number; external: number }> {
  const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  const text = await res.text();
  const value = (name: string) =>
    Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? Number.NaN) / 2 ** 20;
  return { heap: value('nodejs_heap_size_used_bytes'), external: value('nodejs_external_memory_bytes') };
}

/** Resident set size of a process (MiB), from /proc. */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) / 1024;
}

/**
 * A DevTools-protocol session with a node process started with `--inspect` (the bench's own child, on 127.0.0.1):
 * `settle()` asks V8 for a full garbage collection, so that an RSS read after it counts what is live, not garbage
 * V8 had not collected yet. Without it an exec loop's RSS follows V8's heap-growth heuristics (the old space may
 * hold 100 MiB of garbage before a major GC), and a leak cannot be told from a lazy collector.
 */
async function inspector(wsUrl: string): Promise<{ settle(): Promise<void>; close(): void }> {
  const ws = new WebSocket(wsUrl);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let next = 1;
  const waiting = new Map<number, () => void>();
  ws.on('message', (data) => {
    const reply = JSON.parse(String(data)) as { id?: number };
    if (reply.id !== undefined) waiting.get(reply.id)?.();
  });
  const send = (method: string) =>
    new Promise<void>((resolve) => {
      const id = next++;
      waiting.set(id, () => {
        waiting.delete(id);
        resolve();
      });
      ws.send(JSON.stringify({ id, method }));
    });
  await send('HeapProfiler.enable');
  return { settle: () => send('HeapProfiler.collectGarbage'), close: () => ws.close() };
}

/** `count` readings of `pid`'s RSS, `everyMs` apart. */
async function readings(pid: number, count: number, everyMs: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    if (i > 0) await sleep(everyMs);
    out.push(rssMiB(pid));
  }
  return out;
}

function waitFor(child: ChildProcess, pattern: RegExp, what: string): Promise<RegExpExecArray> {
  let err = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: nothing within 120 s:\n${err}`)), 120_000);
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
      const m = pattern.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}:\n${err}`)));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(20_000)]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

// The baseline: node, the store opened as the API opens it, nothing else; it says so on stderr and waits.
const BASELINE_SOURCE = `
import { openDb } from '@studio/db';
const db = await openDb({ pgliteDir: process.argv[2], initApart: true });
process.stderr.write('store open\\n');
process.on('SIGTERM', () => db.close().then(() => process.exit(0)));
setInterval(() => undefined, 60_000);
`;

/** Rows: idle and 20-session RSS beside the baseline, and RSS growth over an exec loop. */
export async function benchMemory(options: { quick: boolean }): Promise<Row[]> {
  const sessions = options.quick ? 5 : 20;
  const loopMs = options.quick ? 60_000 : 10 * 60_000;
  const idleReadings = options.quick ? 3 : 5;
  const dataDir = join(ROOT, '.cache', 'bench-data', `memory-${process.pid}`);
  const bundle = await buildApi(join(ROOT, 'apps', 'api', 'dist', `bench-memory-${process.pid}.mjs`));
  const baselineEntry = join(ROOT, 'bench', `.baseline-${process.pid}.mjs`);
  const baselineBundle = join(ROOT, 'apps', 'api', 'dist', `bench-baseline-${process.pid}.mjs`);
  writeFileSync(baselineEntry, BASELINE_SOURCE);
  try {
    await build({
      entryPoints: [baselineEntry],
      outfile: baselineBundle,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      logLevel: 'warning',
      plugins: [
        {
          name: 'external',
          setup(b) {
            b.onResolve({ filter: /^[^./]/ }, (a) =>
              a.path.startsWith('@studio/') ? undefined : { path: a.path, external: true },
            );
            // openDb finds its migrations beside its source: keep that URL the source's.
            b.onLoad({ filter: /packages\/db\/src\/.*\.ts$/ }, (a) => {
              const text = readFileSync(a.path, 'utf8').replaceAll(
                'import.meta.url',
                JSON.stringify(new URL(`file://${a.path}`).href),
              );
              return { contents: text, loader: 'ts' };
            });
          },
        },
      ],
    });
  } finally {
    rmSync(baselineEntry, { force: true });
  }
  const files = [bundle, `${bundle}.map`, baselineBundle];
  const removeFiles = onCleanup(async () => {
    for (const f of files) rmSync(f, { force: true });
  });

  // The baseline: a bare node process opening a store the way the API does (embedded PGlite, initdb apart on a
  // new data dir, the same openDb), fresh as the API's is at its idle reading. Opening the API's own store after
  // the exec loop would charge the baseline for the rows the loop wrote.
  const baselineDir = join(ROOT, '.cache', 'bench-data', `memory-baseline-${process.pid}`);
  rmSync(baselineDir, { recursive: true, force: true });
  const baseline = spawn(process.execPath, [baselineBundle, baselineDir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const closeBaseline = onCleanup(async () => {
    await stop(baseline);
    rmSync(baselineDir, { recursive: true, force: true });
  });
  let bare: number[];
  try {
    await waitFor(baseline, /store open/, 'the baseline');
    await sleep(options.quick ? 5_000 : 15_000);
    bare = await readings(baseline.pid as number, idleReadings, 1000);
    process.stderr.write(`[bench] memory: baseline ${bare.map((x) => x.toFixed(0)).join(', ')} MiB\n`);
  } finally {
    await closeBaseline();
  }

  // --inspect (loopback, a random port) only so that the exec loop can read RSS after a full GC; see inspector().
  const api = spawn(process.execPath, ['--inspect=127.0.0.1:0', bundle], {
    cwd: join(ROOT, 'apps', 'api'),
    env: {
      ...process.env,
      STUDIO_DATA_DIR: dataDir,
      STUDIO_PORT: '0',
      STUDIO_PREVIEW_PORT: '0',
      STUDIO_BACKENDS: 'docker',
      STUDIO_WARM_POOL: '0',
      STUDIO_INSTANCE_ID: `bench-memory-${process.pid}`,
      STUDIO_ADMIN_PASSWORD: PASSWORD,
      STUDIO_METRICS_TOKEN: METRICS_TOKEN,
      STUDIO_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const apiPid = api.pid as number;
  const log = (s: string) => process.stderr.write(`[bench] memory: ${s}\n`);
  let ids: string[] = [];
  let clients: ReturnType<typeof createStudioClient>[] = [];
  const destroyAll = async () => {
    await Promise.all(
      ids.map((id, i) =>
        clients[i % clients.length]?.sessions.destroy.mutate({ sessionId: id }).catch(() => undefined),
      ),
    );
    ids = [];
  };
  const closeApi = onCleanup(async () => {
    await destroyAll();
    await stop(api);
    rmSync(dataDir, { recursive: true, force: true });
  });
  try {
    const debuggerUrl = waitFor(api, /Debugger listening on (ws:\/\/\S+)/, "the API's inspector");
    const url = (await waitFor(api, /listening on (http:\/\/127\.0\.0\.1:\d+)/, 'the API'))[1] as string;
    const v8 = await inspector((await debuggerUrl)[1] as string);
    // Idle: after start-up settles (the first reconcile, the JIT), then a few readings.
    await sleep(options.quick ? 5_000 : 15_000);
    const idle = await readings(apiPid, idleReadings, 1000);
    log(`idle ${idle.map((x) => x.toFixed(0)).join(', ')} MiB`);

    const { client: admin } = await loginStudioClient({ url, username: 'admin', password: PASSWORD });
    clients = [admin];
    for (let i = 1; i < Math.ceil(sessions / SESSIONS_PER_USER); i++) {
      const username = `memory${i}`;
      const password = `memory-password-${i}-0123456789`;
      await admin.users.create.mutate({ username, password });
      clients.push((await loginStudioClient({ url, username, password })).client);
    }
    for (let i = 0; i < sessions; i += 4) {
      const batch = Array.from({ length: Math.min(4, sessions - i) }, (_, k) => i + k);
      ids.push(
        ...(await Promise.all(
          batch.map(async (n) => {
            const client = clients[n % clients.length] as (typeof clients)[number];
            return (await client.sessions.create.mutate({ image: IMAGE, resources: { diskMb: 64 } })).id;
          }),
        )),
      );
    }
    await sleep(5_000);
    const busy = await readings(apiPid, idleReadings, 1000);
    log(`${sessions} sessions ${busy.map((x) => x.toFixed(0)).join(', ')} MiB`);

    // The exec loop: 4 in flight over the sessions; every 5 s RSS is read as it is, then after a full GC (what a
    // leak would grow). Growth: the median of the last window against the window right after a warm-up (the first
    // fifth of the loop: JIT, heap sizing, the store's caches filling), so what is measured is growth that goes
    // on, not start-up.
    const atStart = await processMemory(url);
    const samples: { at: number; rss: number; settled: number }[] = [];
    const started = performance.now();
    let execs = 0;
    let failures = 0;
    let done = false;
    const sampler = (async () => {
      while (!done) {
        const at = performance.now() - started;
        const rss = rssMiB(apiPid);
        await v8.settle();
        samples.push({ at, rss, settled: rssMiB(apiPid) });
        await sleep(5_000);
      }
    })();
    await Promise.all(
      Array.from({ length: 4 }, async (_, w) => {
        for (let i = w; performance.now() - started < loopMs; i += 4) {
          const id = ids[i % ids.length] as string;
          const client = clients[(i % ids.length) % clients.length] as (typeof clients)[number];
          const r = await client.exec.run
            .mutate({ sessionId: id, command: ['sh', '-c', 'echo $$'] })
            .catch(() => null);
          if (r?.exitCode === 0) execs++;
          else failures++;
        }
      }),
    );
    done = true;
    await sampler;
    const atEnd = await processMemory(url);
    const warmup = loopMs / 5;
    const window = Math.min(60_000, loopMs / 5);
    const firstWindow = samples.filter((s) => s.at >= warmup && s.at <= warmup + window);
    const lastWindow = samples.filter((s) => s.at >= loopMs - window);
    v8.close();
    const where = `heap ${atStart.heap.toFixed(0)} → ${atEnd.heap.toFixed(0)} MiB, external ${atStart.external.toFixed(0)} → ${atEnd.external.toFixed(0)} MiB`;
    log(
      `exec loop: ${execs} execs, ${failures} failures; RSS ${samples[0]?.rss.toFixed(0)} → ${samples.at(-1)?.rss.toFixed(0)} MiB; ${where}`,
    );
    await destroyAll();
    await closeApi();

    const b = summarize(bare);
    const i = summarize(idle);
    const s = summarize(busy);
    const f = summarize(firstWindow.map((x) => x.settled));
    const l = summarize(lastWindow.map((x) => x.settled));
    const fRaw = summarize(firstWindow.map((x) => x.rss));
    const lRaw = summarize(lastWindow.map((x) => x.rss));
    return [
      {
        name: 'api: resident memory, idle (npm start)',
        unit: 'MiB',
        ours: i,
        baseline: b,
        baselineName: 'node + the same store (openDb)',
        ratio: i.median / b.median,
        target: 'apiMemory',
      },
      {
        name: `api: resident memory, ${sessions} idle sessions`,
        unit: 'MiB',
        ours: s,
        baseline: b,
        baselineName: 'node + the same store (openDb)',
        ratio: s.median / b.median,
      },
      {
        name: `api: RSS after a full GC over a ${Math.round(loopMs / 60_000)}-minute exec loop (last ${Math.round(window / 1000)} s vs after warm-up)`,
        unit: 'MiB',
        ours: l,
        baseline: f,
        baselineName: 'the same API after warm-up, after a full GC',
        ratio: l.median / f.median,
        target: 'noGrowth',
        note: `${execs} execs, ${failures} failed; ${where}`,
      },
      {
        name: `api: RSS as read (no GC) over the same loop (last ${Math.round(window / 1000)} s vs after warm-up)`,
        unit: 'MiB',
        ours: lRaw,
        baseline: fRaw,
        baselineName: 'the same API after warm-up',
        ratio: lRaw.median / fRaw.median,
        note: 'follows when V8 chooses to collect: garbage counts until it does',
      },
    ];
  } finally {
    await closeApi();
    await removeFiles();
  }
}
