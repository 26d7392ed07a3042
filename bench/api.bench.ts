import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_DATA_DIR } from '@studio/api/testing';
import { createStudioClient, type EventSourceConstructor, openTerminal } from '@studio/client';
import { DockerBackend } from '@studio/isolation-docker';
import { defaultPolicy } from '@studio/policy';
import { runClientProcess } from './client-process.ts';
import { createToOutput, type Harness, startHarness } from './harness.ts';
import { SECCOMP_PROFILE } from './paths.ts';
import { onCleanup, type Row, ratioOf } from './report.ts';
import { interleaved, progress, sleep, summarize, timed } from './stats.ts';

const IMAGE = process.env.STUDIO_SANDBOX_IMAGE ?? 'studio-sandbox:latest';

type Samples = { ours: number[]; raw: number[] };

/** Runs bench/api-client.ts in its own process against both URLs and returns its samples. */
function runClient(job: {
  ours: string;
  raw: string;
  pings: number;
  seconds: number;
  rounds: number;
}): Promise<{ latency: Samples; throughput: Samples }> {
  return runClientProcess('api-client.ts', job);
}

/**
 * Item 5: a no-op procedure (system.ping) vs a raw node:http handler, both served from this process, measured by
 * a client in another process: latency, then requests/s at 10 in flight.
 */
export async function benchApi(options: { quick: boolean }): Promise<Row[]> {
  const pings = options.quick ? 300 : 2000;
  const seconds = options.quick ? 2 : 5;
  const rounds = options.quick ? 2 : 4;
  const backend = new DockerBackend({
    dataDir: join(TEST_DATA_DIR, 'bench-docker'),
    instanceId: 'bench-api',
    seccompProfile: SECCOMP_PROFILE,
  });
  const h = await startHarness({ backend, labels: { 'studio.test': 'bench-api' }, sessions: 1 });
  const body = JSON.stringify({ result: { data: { ok: true } } });
  const raw = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(body);
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  const closeRaw = onCleanup(() => new Promise((r) => raw.close(r)));
  try {
    const rawUrl = `http://127.0.0.1:${(raw.address() as AddressInfo).port}/trpc/system.ping`;
    const apiUrl = `${h.t.url}/trpc/system.ping`;
    const { latency: lat, throughput: r } = await runClient({
      ours: apiUrl,
      raw: rawUrl,
      pings,
      seconds,
      rounds,
    });
    const lo = summarize(lat.ours);
    const lb = summarize(lat.raw);
    const ro = summarize(r.ours);
    const rb = summarize(r.raw);
    return [
      {
        name: 'api: no-op procedure latency (system.ping over HTTP)',
        unit: 'ms',
        ours: lo,
        baseline: lb,
        baselineName: 'node:http handler',
        ratio: ratioOf(lo, lb),
        target: 'apiLatency',
      },
      {
        name: 'api: no-op procedure requests/s, 10 in flight',
        unit: 'req/s',
        ours: ro,
        baseline: rb,
        baselineName: 'node:http handler',
        ratio: ro.median / rb.median,
        ratioNote: 'ours / baseline: the share of raw throughput kept',
        target: 'apiThroughput',
        note: `${seconds} s per sample`,
      },
    ];
  } finally {
    await closeRaw();
    await h.close();
  }
}

/** Collects terminal output and resolves when `needle` appears in what arrived after the call. */
function outputWatcher(onData: (listener: (chunk: Uint8Array) => void) => () => void) {
  const decoder = new TextDecoder();
  let tail = '';
  let bytes = 0;
  let waiter: { needle: string; resolve: () => void } | undefined;
  const off = onData((chunk) => {
    bytes += chunk.byteLength;
    tail = (tail + decoder.decode(chunk, { stream: true })).slice(-256);
    if (waiter && tail.includes(waiter.needle)) {
      const w = waiter;
      waiter = undefined;
      tail = '';
      w.resolve();
    }
  });
  return {
    get bytes() {
      return bytes;
    },
    until(needle: string, timeoutMs = 120_000): Promise<void> {
      tail = '';
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "${needle}" within ${timeoutMs} ms`)), timeoutMs);
        waiter = {
          needle,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        };
      });
    },
    off,
  };
}

/** A real local PTY on the host: python3's pty module running bash, its master copied to our pipe. */
function localPty(cwd: string) {
  const child: ChildProcess = spawn(
    'python3',
    ['-c', "import pty; pty.spawn(['bash', '--norc', '--noprofile', '-i'])"],
    { cwd, stdio: ['pipe', 'pipe', 'ignore'], env: { ...process.env, TERM: 'xterm' } },
  );
  const kill = onCleanup(async () => {
    child.kill('SIGKILL');
  });
  return {
    write: (s: string) => child.stdin?.write(s),
    onData(listener: (chunk: Uint8Array) => void) {
      child.stdout?.on('data', listener);
      return () => child.stdout?.off('data', listener);
    },
    close: kill,
  };
}

/**
 * Items 2 and 4: warm-pool claim → first exec output vs a cold create (both through the API; a cold create asks
 * for non-default resources, which never claims), and the terminal: keystroke echo and a 50 MB `cat` through
 * the `/terminal` WebSocket vs the same in a local PTY on the host.
 */
export async function benchApiRealtime(options: { quick: boolean }): Promise<Row[]> {
  const { default: WebSocket } = await import('ws');
  const creates = options.quick ? 3 : 10;
  const keys = options.quick ? 30 : 200;
  const floods = options.quick ? 2 : 4;
  const floodBytes = options.quick ? 10_000_000 : 50_000_000;
  const instanceId = 'bench-api-rt';
  const backend = new DockerBackend({
    dataDir: join(TEST_DATA_DIR, 'bench-docker'),
    instanceId,
    seccompProfile: SECCOMP_PROFILE,
  });
  const h: Harness = await startHarness({
    backend,
    labels: { 'studio.test': 'bench-api-rt' },
    sessions: 1,
    env: { STUDIO_INSTANCE_ID: instanceId, STUDIO_WARM_POOL: 'docker=1' },
  });
  const rows: Row[] = [];
  const hostDir = mkdtempSync(join(tmpdir(), 'studio-bench-pty-'));
  const removeHostDir = onCleanup(async () => rmSync(hostDir, { recursive: true, force: true }));
  try {
    const client = h.clients[0] as Harness['clients'][number];
    const sessions = h.t.app.deps.sessions;
    await sessions.startPool();
    const poolReady = async () => {
      for (let i = 0; i < 600; i++) {
        if (Object.values(sessions.pool?.status() ?? {}).every((s) => s.ready >= s.size)) return;
        await sleep(100);
      }
      throw new Error('the warm pool did not fill within 60 s');
    };
    const destroy = async (sessionId: string) => {
      await client.sessions.destroy.mutate({ sessionId });
    };
    await poolReady();
    const wc = await interleaved(
      'warm claim vs cold create',
      creates,
      timed(
        async () => {
          const id = await createToOutput(client, IMAGE, 'docker');
          if (!sessions.wasPooled(id)) throw new Error('the create did not claim from the pool');
          return id;
        },
        async (id) => {
          await destroy(id);
          await poolReady();
        },
      ),
      timed(
        () =>
          createToOutput(client, IMAGE, 'docker', { resources: { pids: defaultPolicy.sandbox.pids - 1 } }),
        destroy,
      ),
    );
    const w = summarize(wc.ours);
    const c = summarize(wc.raw);
    rows.push({
      name: 'api: warm-pool claim → first exec output',
      unit: 'ms',
      ours: w,
      baseline: c,
      baselineName: 'cold create → first exec output (API)',
      ratio: ratioOf(w, c),
      target: 'warmClaim',
    });

    // The terminal: one session through the WebSocket, one local PTY on the host.
    const sessionId = await createToOutput(client, IMAGE, 'docker');
    try {
      const make = `base64 -w 99 /dev/urandom | head -c ${floodBytes} > big.txt`;
      await client.exec.run.mutate({ sessionId, command: ['bash', '-c', make], timeoutMs: 120_000 });
      writeFileSync(join(hostDir, 'big.txt'), randomText(floodBytes));
      const term = openTerminal({
        url: h.t.url,
        token: h.token,
        sessionId,
        WebSocket: WebSocket as unknown as NonNullable<Parameters<typeof openTerminal>[0]['WebSocket']>,
      });
      const closeTerm = onCleanup(async () => term.close());
      await term.ready;
      const local = localPty(hostDir);
      const api = outputWatcher((l) => term.onData(l));
      const raw = outputWatcher((l) => local.onData(l));
      for (const [wt, write] of [
        [api, (s: string) => term.write(s)],
        [raw, (s: string) => local.write(s)],
      ] as const) {
        write(
          "PS1='$ '; stty -ixon; bind 'set enable-bracketed-paste off' 2>/dev/null; echo READY_$((6*7))\n",
        );
        await wt.until('READY_42', 20_000).catch(() => undefined);
        await sleep(300);
      }
      let i = 0;
      const key = (wt: typeof api, write: (s: string) => void) => async () => {
        const ch = 'abcdefghijklmnopqrstuvwxyz'[i++ % 26] as string;
        const seen = wt.until(ch, 10_000);
        const t0 = performance.now();
        write(ch);
        await seen;
        return performance.now() - t0;
      };
      const echo = await interleaved(
        'terminal keystroke echo',
        keys,
        key(api, (s) => term.write(s)),
        key(raw, (s) => local.write(s)),
        5,
      );
      term.write('\x15');
      local.write('\x15');
      await sleep(300);
      const eo = summarize(echo.ours);
      const eb = summarize(echo.raw);
      rows.push({
        name: 'terminal: keystroke echo latency',
        unit: 'ms',
        ours: eo,
        baseline: eb,
        baselineName: 'local PTY on the host (python3 pty + bash)',
        ratio: ratioOf(eo, eb),
      });
      let dropped = 0;
      term.onMessage((m) => {
        if (m.type === 'dropped') dropped += (m as { bytes: number }).bytes;
      });
      let k = 0;
      const flood = (wt: typeof api, write: (s: string) => void) => async () => {
        const before = wt.bytes;
        const done = wt.until('FLOOD_42');
        const t0 = performance.now();
        write('cat big.txt; echo FLOOD_$((6*7))\n');
        await done;
        const s = (performance.now() - t0) / 1000;
        await sleep(300);
        progress('terminal 50 MB cat', Math.ceil(++k / 2), floods + 1);
        return (wt.bytes - before) / 1e6 / s;
      };
      const fl = await interleaved(
        'terminal throughput',
        floods,
        flood(api, (s) => term.write(s)),
        flood(raw, (s) => local.write(s)),
      );
      const fo = summarize(fl.ours);
      const fb = summarize(fl.raw);
      rows.push({
        name: `terminal: throughput, ${floodBytes / 1e6} MB \`cat\` to a WebSocket client`,
        unit: 'MB/s',
        ours: fo,
        baseline: fb,
        baselineName: 'the same `cat` in a local PTY on the host',
        ratio: fo.median / fb.median,
        ratioNote: 'ours / baseline',
        target: 'terminal',
        ...(dropped ? { note: `${(dropped / 1e6).toFixed(1)} MB dropped by backpressure` } : {}),
      });
      api.off();
      raw.off();
      await closeTerm();
      await local.close();

      rows.push(await fanOut(h, sessionId, options.quick ? 10 : 40));
    } finally {
      await destroy(sessionId).catch(() => undefined);
    }
  } finally {
    await removeHostDir();
    await h.close();
  }
  return rows;
}

/** Base64-looking text in 99-column lines, like `base64 -w 99 /dev/urandom | head -c n`. */
function randomText(n: number): Buffer {
  const alphabet = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/');
  const line = Buffer.alloc(100);
  const out = Buffer.alloc(n);
  for (let off = 0; off < n; off += 100) {
    for (let j = 0; j < 99; j++) line[j] = alphabet[Math.floor(Math.random() * 64)] as number;
    line[99] = 10;
    line.copy(out, off, 0, Math.min(100, n - off));
  }
  return out;
}

/**
 * Event fan-out to 10 subscribers: from `files.write` to each of 10 `events.subscribe` SSE streams seeing its
 * `file.changed`, against a raw node:http server pushing one SSE message to 10 `eventsource` clients (the same
 * transport, nothing else). Interleaved; per-subscriber latencies. Context, no target.
 */
async function fanOut(h: Harness, sessionId: string, rounds: number): Promise<Row> {
  const N = 10;
  const { EventSource } = await import('eventsource');
  const ES = EventSource as unknown as EventSourceConstructor;
  const clients = Array.from({ length: N }, () =>
    createStudioClient({ url: h.t.url, token: h.token, EventSource: ES }),
  );
  let waiting:
    | { match: (data: unknown) => boolean; t0: number; out: number[]; left: number; done: () => void }
    | undefined;
  const seen = (data: unknown) => {
    const w = waiting;
    if (!w?.match(data)) return;
    w.out.push(performance.now() - w.t0);
    if (--w.left === 0) w.done();
  };
  const arm = (match: (data: unknown) => boolean) => {
    const out: number[] = [];
    const all = new Promise<void>((done) => {
      waiting = { match, t0: performance.now(), out, left: N, done };
    });
    return { out, all };
  };
  // Ours: 10 subscriptions to the session's events.
  const started: Promise<void>[] = [];
  const subs = clients.map((c) => {
    let ok!: () => void;
    started.push(new Promise<void>((r) => (ok = r)));
    return c.events.subscribe.subscribe(
      { sessionId },
      { onStarted: () => ok(), onData: (e) => seen(e.data) },
    );
  });
  // Raw: the same SSE transport from a bare node:http server.
  const streams = new Set<import('node:http').ServerResponse>();
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    res.write(': open\n\n');
    streams.add(res);
    res.on('close', () => streams.delete(res));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const rawUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const rawClients = Array.from({ length: N }, () => {
    const es = new EventSource(rawUrl);
    es.onmessage = (m: { data: string }) => seen(m.data);
    return es;
  });
  const stop = onCleanup(async () => {
    for (const s of subs) s.unsubscribe();
    for (const es of rawClients) es.close();
    for (const res of streams) res.end();
    await new Promise<void>((r) => server.close(() => r()));
  });
  try {
    await Promise.all(started);
    for (let i = 0; i < 100 && streams.size < N; i++) await sleep(50);
    await sleep(500);
    let k = 0;
    const ours = async () => {
      const path = `fanout-${k++}.txt`;
      const { out, all } = arm(
        (d) =>
          (d as { type?: string; path?: string }).type === 'file.changed' &&
          (d as { path?: string }).path === path,
      );
      await h.clients[0]?.files.write.mutate({ sessionId, path, content: 'x' });
      await all;
      return summarize(out).median;
    };
    const raw = async () => {
      const tag = `raw-${k++}`;
      const { out, all } = arm((d) => d === tag);
      for (const res of streams) res.write(`data: ${tag}\n\n`);
      await all;
      return summarize(out).median;
    };
    const r = await interleaved('event fan-out to 10 subscribers', rounds, ours, raw);
    const o = summarize(r.ours);
    const b = summarize(r.raw);
    return {
      name: `api: event fan-out, files.write → each of ${N} events.subscribe subscribers`,
      unit: 'ms',
      ours: o,
      baseline: b,
      baselineName: `a raw node:http SSE push to ${N} EventSource clients`,
      ratio: ratioOf(o, b),
      note: 'per round: the median over the 10 subscribers; ours includes the write into the sandbox',
    };
  } finally {
    await stop();
  }
}
