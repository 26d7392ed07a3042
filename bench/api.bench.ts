import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { ADMIN_PASSWORD, startTestApi, TEST_DATA_DIR } from '@studio/api/testing';
import { createStudioClient } from '@studio/client';
import { DockerBackend } from '@studio/isolation-docker';
import { createRateLimiter, defaultPolicy } from '@studio/policy';
import { type Row, sample, sampleWith, summarize } from './stats.ts';

const IMAGE = 'studio-sandbox:latest';
const LABELS = { 'studio.test': 'bench-api' };

/**
 * The API's overhead beside raw baselines: create → first exec output (API vs DockerBackend), exec round trip
 * (API vs DockerBackend on an equal sandbox), and a no-op procedure (tRPC vs a bare node:http handler).
 */
export async function benchApi(options: { quick: boolean }): Promise<Row[]> {
  const creates = options.quick ? 3 : 8;
  const execs = options.quick ? 50 : 300;
  const pings = options.quick ? 300 : 2000;
  const backend = new DockerBackend({
    dataDir: join(TEST_DATA_DIR, 'bench-docker'),
    instanceId: 'bench-api',
  });
  const t = await startTestApi({
    backends: [backend],
    labels: LABELS,
    createLimiter: createRateLimiter({ limit: 100_000, windowMs: 60_000 }),
  });
  const rows: Row[] = [];
  try {
    const client = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
    const s = defaultPolicy.sandbox;
    const resources = {
      memoryBytes: s.memoryBytes,
      cpus: s.cpus,
      pids: s.pids,
      diskBytes: s.diskBytes,
      inodes: s.inodes,
      tmpBytes: s.tmpBytes,
    };

    const apiCreate = await sampleWith(
      creates,
      async () => {
        const session = await client.sessions.create.mutate({ image: IMAGE });
        const r = await client.exec.run.mutate({ sessionId: session.id, command: ['echo', 'ready'] });
        if (r.stdout !== 'ready\n') throw new Error('no output');
        return session.id;
      },
      async (sessionId) => {
        await client.sessions.destroy.mutate({ sessionId });
      },
    );
    const rawCreate = await sampleWith(
      creates,
      async () => {
        const sandbox = await backend.create({ image: IMAGE, resources, labels: LABELS });
        const r = await sandbox.exec(['echo', 'ready'], { timeoutMs: 10_000, maxOutputBytes: 1024 });
        if (new TextDecoder().decode(r.stdout) !== 'ready\n') throw new Error('no output');
        return sandbox;
      },
      (sandbox) => sandbox.destroy(),
    );
    rows.push({
      name: 'api: create → first exec output',
      unit: 'ms',
      ours: summarize(apiCreate),
      baseline: summarize(rawCreate),
      baselineName: 'DockerBackend create + exec',
    });

    const session = await client.sessions.create.mutate({ image: IMAGE });
    const sandbox = await backend.create({ image: IMAGE, resources, labels: LABELS });
    try {
      const apiExec = await sample(execs, () =>
        client.exec.run.mutate({ sessionId: session.id, command: ['true'] }),
      );
      const rawExec = await sample(execs, () =>
        sandbox.exec(['true'], { timeoutMs: 10_000, maxOutputBytes: 1024 }),
      );
      rows.push({
        name: 'api: exec round trip (`true`)',
        unit: 'ms',
        ours: summarize(apiExec),
        baseline: summarize(rawExec),
        baselineName: 'DockerBackend sandbox.exec',
      });
    } finally {
      await client.sessions.destroy.mutate({ sessionId: session.id });
      await sandbox.destroy();
    }

    const body = JSON.stringify({ result: { data: { ok: true } } });
    const raw = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(body);
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    try {
      const rawUrl = `http://127.0.0.1:${(raw.address() as AddressInfo).port}/trpc/system.ping`;
      const get = async (url: string) => {
        const res = await fetch(url);
        await res.text();
      };
      const apiPing = await sample(pings, () => get(`${t.url}/trpc/system.ping`), 50);
      const rawPing = await sample(pings, () => get(rawUrl), 50);
      rows.push({
        name: 'api: no-op procedure (system.ping over HTTP)',
        unit: 'ms',
        ours: summarize(apiPing),
        baseline: summarize(rawPing),
        baselineName: 'node:http handler',
      });
    } finally {
      raw.close();
    }
  } finally {
    for (const s of await backend.list({ labels: LABELS }))
      await backend.destroy(s.id).catch(() => undefined);
    await t.close();
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------------------
// The real-time half: warm pool vs cold create, terminal echo and throughput, event fan-out.

const RT_LABELS = { 'studio.test': 'bench-api-rt' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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

/**
 * The real-time figures, each beside a baseline in the same run:
 * - warm-pool claim → first exec output vs a cold create → first exec output, both through the API (pool size 1,
 *   refilled outside the clock; a cold create is one with non-default resources, which never claims);
 * - terminal keystroke echo latency and `head -c 50M /dev/zero | base64` throughput through the `/terminal`
 *   WebSocket vs the same through the sandbox's `openTerminal` directly;
 * - event fan-out: `files.write` → each of 10 `events.subscribe` subscribers (SSE) seeing its `file.changed`,
 *   vs a raw in-process EventEmitter with 10 listeners.
 */
export async function benchApiRealtime(options: { quick: boolean }): Promise<Row[]> {
  const { default: WebSocket } = await import('ws');
  const { EventSource } = await import('eventsource');
  const { EventEmitter } = await import('node:events');
  const { openTerminal } = await import('@studio/client');
  const creates = options.quick ? 3 : 8;
  const keys = options.quick ? 30 : 200;
  const floods = options.quick ? 2 : 5;
  const floodMiB = options.quick ? 10 : 50;
  const writes = options.quick ? 10 : 50;
  const instanceId = 'bench-api-rt';
  const backend = new DockerBackend({ dataDir: join(TEST_DATA_DIR, 'bench-docker'), instanceId });
  const t = await startTestApi({
    backends: [backend],
    labels: RT_LABELS,
    createLimiter: createRateLimiter({ limit: 100_000, windowMs: 60_000 }),
    env: { STUDIO_INSTANCE_ID: instanceId, STUDIO_WARM_POOL: 'docker=1' },
  });
  const rows: Row[] = [];
  try {
    const token = await t.login('admin', ADMIN_PASSWORD);
    const client = createStudioClient({
      url: t.url,
      token,
      EventSource: EventSource as unknown as NonNullable<
        Parameters<typeof createStudioClient>[0]['EventSource']
      >,
    });
    const sessions = t.app.deps.sessions;
    await sessions.startPool();
    const poolReady = async () => {
      for (let i = 0; i < 600; i++) {
        if (Object.values(sessions.pool?.status() ?? {}).every((s) => s.ready >= s.size)) return;
        await sleep(100);
      }
      throw new Error('the warm pool did not fill within 60 s');
    };
    const firstOutput = async (resources?: { pids: number }) => {
      const session = await client.sessions.create.mutate({
        image: IMAGE,
        ...(resources ? { resources } : {}),
      });
      const r = await client.exec.run.mutate({ sessionId: session.id, command: ['echo', 'ready'] });
      if (r.stdout !== 'ready\n') throw new Error('no output');
      return session.id;
    };
    const destroy = async (sessionId: string) => {
      await client.sessions.destroy.mutate({ sessionId });
    };
    await poolReady();
    const warm = await sampleWith(
      creates,
      async () => {
        const id = await firstOutput();
        if (!sessions.wasPooled(id)) throw new Error('the create did not claim from the pool');
        return id;
      },
      async (id) => {
        await destroy(id);
        await poolReady();
      },
    );
    const cold = await sampleWith(
      creates,
      () => firstOutput({ pids: defaultPolicy.sandbox.pids - 1 }),
      destroy,
    );
    rows.push({
      name: 'api: create → first exec output, warm pool claim (API)',
      unit: 'ms',
      ours: summarize(warm),
      baseline: summarize(cold),
      baselineName: 'cold create (API)',
    });

    // One session for the terminal and the events; its sandbox also serves the raw terminal baseline.
    const sessionId = await firstOutput();
    try {
      const sandbox = await backend.get(
        (await t.app.deps.store.getSessionById(sessionId))?.sandboxId ?? 'missing',
      );
      const term = openTerminal({
        url: t.url,
        token,
        sessionId,
        WebSocket: WebSocket as unknown as NonNullable<Parameters<typeof openTerminal>[0]['WebSocket']>,
      });
      await term.ready;
      const rawTerm = await sandbox.openTerminal({ cols: 80, rows: 24 });
      const api = outputWatcher((l) => term.onData(l));
      const raw = outputWatcher((l) => rawTerm.onData(l));
      for (const [w, write] of [
        [api, (s: string) => term.write(s)],
        [raw, (s: string) => rawTerm.write(s)],
      ] as const) {
        // A quiet prompt first: no colour, no history expansion surprises.
        write("PS1='$ '; stty -ixon\n");
        await w.until(`$ `, 20_000).catch(() => undefined);
        await sleep(300);
      }
      const echo = async (w: typeof api, write: (s: string) => void) => {
        let i = 0;
        const out = await sample(keys, async () => {
          const c = 'abcdefghijklmnopqrstuvwxyz'[i++ % 26] as string;
          const seen = w.until(c, 10_000);
          write(c);
          await seen;
        });
        write('\x15'); // clear the line (Ctrl-U)
        await sleep(200);
        return out;
      };
      const apiEcho = await echo(api, (s) => term.write(s));
      const rawEcho = await echo(raw, (s) => rawTerm.write(s));
      rows.push({
        name: 'api: terminal keystroke echo',
        unit: 'ms',
        ours: summarize(apiEcho),
        baseline: summarize(rawEcho),
        baselineName: 'sandbox.openTerminal',
      });
      let dropped = 0;
      term.onMessage((m) => {
        if (m.type === 'dropped') dropped += (m as { bytes: number }).bytes;
      });
      const flood = async (w: typeof api, write: (s: string) => void) => {
        const out: number[] = [];
        for (let i = 0; i < floods; i++) {
          const before = w.bytes;
          const done = w.until('FLOOD_42');
          const t0 = performance.now();
          write(`head -c ${floodMiB}M /dev/zero | base64; echo FLOOD_$((6*7))\n`);
          await done;
          const seconds = (performance.now() - t0) / 1000;
          out.push((w.bytes - before) / 2 ** 20 / seconds);
          await sleep(200);
        }
        return out;
      };
      const apiFlood = await flood(api, (s) => term.write(s));
      const rawFlood = await flood(raw, (s) => rawTerm.write(s));
      rows.push({
        name: `api: terminal throughput, ${floodMiB} MiB base64'd${dropped ? ` (${(dropped / 2 ** 20).toFixed(1)} MiB dropped)` : ''}`,
        unit: 'MiB/s',
        ours: summarize(apiFlood),
        baseline: summarize(rawFlood),
        baselineName: 'sandbox.openTerminal',
      });
      api.off();
      raw.off();
      term.close();
      await rawTerm.close();

      // Event fan-out to 10 subscribers.
      const N = 10;
      let pending: { path: string; t0: number; left: number; out: number[]; resolve: () => void } | undefined;
      const subs = Array.from({ length: N }, () => {
        let subscribed!: () => void;
        const started = new Promise<void>((r) => {
          subscribed = r;
        });
        const sub = client.events.subscribe.subscribe(
          { sessionId },
          {
            onStarted: () => subscribed(),
            onData: (e) => {
              const ev = e.data as { type: string; path?: string };
              if (pending && ev.type === 'file.changed' && ev.path === pending.path) {
                pending.out.push(performance.now() - pending.t0);
                if (--pending.left === 0) pending.resolve();
              }
            },
          },
        );
        return { sub, started };
      });
      await Promise.all(subs.map((s) => s.started));
      await sleep(500); // let every SSE stream settle
      const fanout: number[] = [];
      for (let i = 0; i < writes + 2; i++) {
        const path = `fanout-${i}.txt`;
        const out: number[] = [];
        const all = new Promise<void>((resolve) => {
          pending = { path, t0: performance.now(), left: N, out, resolve };
        });
        await client.files.write.mutate({ sessionId, path, content: 'x' });
        await all;
        if (i >= 2) fanout.push(...out);
      }
      for (const s of subs) s.sub.unsubscribe();
      const emitter = new EventEmitter();
      let rawT0 = 0;
      const rawOut: number[] = [];
      for (let i = 0; i < N; i++) emitter.on('file.changed', () => rawOut.push(performance.now() - rawT0));
      for (let i = 0; i < writes * 10; i++) {
        rawT0 = performance.now();
        emitter.emit('file.changed', { path: `fanout-${i}.txt` });
        await Promise.resolve();
      }
      rows.push({
        name: `api: event fan-out, files.write → each of ${N} events.subscribe subscribers`,
        unit: 'ms',
        ours: summarize(fanout),
        baseline: summarize(rawOut),
        baselineName: 'in-process EventEmitter, 10 listeners',
      });
    } finally {
      await destroy(sessionId);
    }
  } finally {
    await t.close();
    for (const s of await backend.list({ labels: RT_LABELS }))
      await backend.destroy(s.id).catch(() => undefined);
  }
  return rows;
}
