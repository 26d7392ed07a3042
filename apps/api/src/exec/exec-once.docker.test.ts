import { connect, createServer, type Server, type Socket } from 'node:net';
import {
  createStudioClient,
  type ExecStreamEvent,
  runExec,
  type StudioClient,
  streamExec,
} from '@studio/client';
import { afterAll, describe, expect } from 'vitest';
import { dockerApiTest, dockerSkip, ES } from '../testing/docker-api.ts';

// Issue 17 item 2 on the real DockerBackend: a streamed exec read through @studio/client whose real TCP
// connection is cut mid-output (twice) runs once and delivers every event once; exec.run whose connection is cut
// before the answer is retried by the client with its idempotency key and runs once. The cut is made by a TCP
// proxy between the client and the API that destroys every connection it carries.

const IMAGE = 'studio-sandbox:latest';
const test = dockerApiTest('exec-once');

/** A TCP proxy to `target` whose `cut()` destroys every connection open through it (it keeps listening). */
async function cuttingProxy(
  target: URL,
): Promise<{ url: string; cut(): number; accepted: () => number; close(): Promise<void> }> {
  const open = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((client) => {
    accepted++;
    const upstream = connect(Number(target.port), target.hostname);
    client.pipe(upstream).pipe(client);
    open.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    cut() {
      const n = open.size;
      for (const s of [...open]) s.destroy();
      open.clear();
      return n;
    },
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}

async function until(check: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(dockerSkip !== undefined)(
  `exactly-once execs on Docker${dockerSkip ? ` (skipped: ${dockerSkip})` : ''}`,
  () => {
    let proxy: Awaited<ReturnType<typeof cuttingProxy>>;
    let viaProxy: StudioClient;
    let direct: StudioClient;
    let sessionId: string;

    test.beforeAll(async ({ api, alice }) => {
      proxy = await cuttingProxy(new URL(api.url));
      viaProxy = createStudioClient({ url: proxy.url, token: alice.token, EventSource: ES });
      direct = alice.client;
      sessionId = (await direct.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 256 } })).id;
    });
    afterAll(async () => {
      await proxy?.close();
    });

    const runs = async (file: string) =>
      (
        await direct.exec.run.mutate({ sessionId, command: ['sh', '-c', `cat ${file} 2>/dev/null || true`] })
      ).stdout
        .split('\n')
        .filter(Boolean).length;

    test('a streamed exec whose SSE connection is cut mid-output runs once and loses nothing', async () => {
      const n = 60;
      const seen: ExecStreamEvent[] = [];
      let error: unknown;
      let complete = false;
      streamExec(
        viaProxy,
        {
          sessionId,
          command: [
            'sh',
            '-c',
            `echo ran >> /workspace/ran-stream.txt; i=1; while [ $i -le ${n} ]; do echo line-$i; i=$((i+1)); sleep 0.05; done`,
          ],
        },
        {
          onData: (e) => seen.push(e),
          onError: (e) => {
            error = e;
          },
          onComplete: () => {
            complete = true;
          },
        },
      );
      const lines = () => seen.filter((e) => e.type === 'stdout').length;
      await until(() => lines() >= 10, 'ten lines');
      expect(proxy.cut()).toBeGreaterThan(0);
      const acceptedAfterFirstCut = proxy.accepted();
      await until(() => lines() >= 30, 'thirty lines after the first cut');
      expect(proxy.cut()).toBeGreaterThan(0);
      await until(() => complete || error !== undefined, 'the end of the stream');
      expect(error).toBeUndefined();
      // It did reconnect through the proxy (a new connection), by the link itself or by the helper.
      expect(proxy.accepted()).toBeGreaterThan(acceptedAfterFirstCut);
      const text = seen.map((e) => (e.type === 'stdout' ? e.data : '')).join('');
      expect(text).toBe(Array.from({ length: n }, (_, i) => `line-${i + 1}\n`).join(''));
      expect(seen.filter((e) => e.type === 'started')).toHaveLength(1);
      expect(seen.filter((e) => e.type === 'exit')).toEqual([expect.objectContaining({ exitCode: 0 })]);
      expect(await runs('/workspace/ran-stream.txt')).toBe(1);
    });

    test('exec.run cut before its answer is retried with its idempotency key and runs once', async () => {
      const pending = runExec(viaProxy, {
        sessionId,
        command: ['sh', '-c', 'echo ran >> /workspace/ran-run.txt; sleep 1.5; echo done'],
      });
      await new Promise((r) => setTimeout(r, 600)); // the command is running, the answer not yet sent
      expect(proxy.cut()).toBeGreaterThan(0);
      const result = await pending;
      expect(result).toMatchObject({ exitCode: 0, stdout: 'done\n' });
      expect(await runs('/workspace/ran-run.txt')).toBe(1);
    });
  },
);
