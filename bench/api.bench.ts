import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { ADMIN_PASSWORD, startTestApi, TEST_DATA_DIR } from '@studio/api/testing';
import { createStudioClient } from '@studio/client';
import { DockerBackend } from '@studio/isolation-docker';
import { createRateLimiter, defaultPolicy } from '@studio/policy';
import { type Row, sample, summarize } from './stats.ts';

// Times only `measure`; `after` (cleanup) runs outside the clock.
async function sampleWith<T>(
  n: number,
  measure: () => Promise<T>,
  after: (v: T) => Promise<void>,
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n + 1; i++) {
    const t = performance.now();
    const v = await measure();
    const elapsed = performance.now() - t;
    await after(v);
    if (i > 0) out.push(elapsed);
  }
  return out;
}

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
      name: 'create → first exec output',
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
        name: 'exec round trip (`true`)',
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
        name: 'no-op procedure (system.ping over HTTP)',
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
