import { once } from 'node:events';
import { connect, createServer as createTcpServer, type Socket, type Server as TcpServer } from 'node:net';
import { createStudioClient, type StudioClient } from '@studio/client';
import { openDb } from '@studio/db';
import { createTestDatabase } from '@studio/db/testing';
import { createRateLimiter } from '@studio/policy';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ADMIN_PASSWORD, startTestApi, type TestApi } from './testing/api-fixture.ts';
import { postgresSkipReason, TEST_DATABASE_URL } from './testing/databases.ts';
import { FakeBackend } from './testing/fake-backend.ts';

// Limits at the edge (issue 17, item 5) and the drain (item 4), against the real server on loopback: what a
// slow, large or batched request gets, what a call gets while the store is down, and what clients see while
// the server drains. The real process under SIGTERM is in shutdown.docker.test.ts.

const IMAGE = 'studio-sandbox:latest';

/** A raw HTTP/1.1 exchange: writes `head`, then whatever `feed` writes; resolves when the server closes. */
async function raw(
  url: string,
  head: string,
  feed?: (socket: Socket) => () => void,
): Promise<{ text: string; ms: number }> {
  const { port, hostname } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  const started = Date.now();
  let text = '';
  socket.on('data', (c: Buffer) => {
    text += c.toString('latin1');
  });
  socket.write(head);
  const stop = feed?.(socket);
  await once(socket, 'close');
  stop?.();
  return { text, ms: Date.now() - started };
}

/** Writes one byte every `ms` for as long as the socket lasts. */
const trickle =
  (ms: number) =>
  (socket: Socket): (() => void) => {
    const timer = setInterval(() => {
      if (socket.writable) socket.write('x');
    }, ms);
    return () => clearInterval(timer);
  };

/** Reads an SSE response's text as it arrives. */
function sse(url: string, token: string): { text: () => string; abort(): void } {
  const ac = new AbortController();
  let text = '';
  void fetch(url, {
    headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
    signal: ac.signal,
  })
    .then(async (res) => {
      const decoder = new TextDecoder();
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) text += decoder.decode(chunk);
    })
    .catch(() => undefined);
  return { text: () => text, abort: () => ac.abort() };
}

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('edge limits', () => {
  let t: TestApi;
  let token: string;
  let admin: StudioClient;
  let sessionId: string;

  beforeAll(async () => {
    t = await startTestApi({
      backends: [new FakeBackend()],
      loginLimiter: createRateLimiter({ limit: 5, windowMs: 60_000 }),
      env: {
        STUDIO_REQUEST_TIMEOUT_SECONDS: '2',
        STUDIO_MAX_BATCH_CALLS: '5',
        // A small body cap: 2 × 1 KiB + 1 MiB.
        STUDIO_POLICY: '{"files":{"maxFileBytes":1024}}',
      },
    });
    token = await t.login('admin', ADMIN_PASSWORD);
    admin = createStudioClient({ url: t.url, token });
    sessionId = (await admin.sessions.create.mutate({ image: IMAGE })).id;
  });
  afterAll(async () => {
    await t?.close();
  });

  it('cuts off a trickled body at the request deadline (408), not minutes later', async () => {
    const head =
      'POST /trpc/auth.login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n';
    const r = await raw(t.url, head, trickle(100));
    expect(r.text).toMatch(/^HTTP\/1\.1 408 /);
    // 2 s deadline, found by a check every second.
    expect(r.ms).toBeGreaterThanOrEqual(1900);
    expect(r.ms).toBeLessThan(4500);
  });

  it('cuts off trickled headers at the same deadline', async () => {
    const r = await raw(t.url, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ', trickle(100));
    expect(r.text).toMatch(/^HTTP\/1\.1 408 /);
    expect(r.ms).toBeLessThan(4500);
  });

  it('does not cut a response that takes longer than the deadline (the body arrived in time)', async () => {
    const run = await admin.exec.run.mutate({ sessionId, command: ['sh', '-c', 'sleep 3; echo slept'] });
    expect(run.stdout).toBe('slept\n');
  });

  it('refuses a body declared over the cap before reading it (413)', async () => {
    const head = `POST /trpc/auth.login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${5 * 1024 * 1024}\r\n\r\n`;
    const r = await raw(t.url, head);
    expect(r.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(r.text).toMatch(/connection: close/i);
    expect(r.text).toContain('"studioCode":"PAYLOAD_TOO_LARGE"');
    expect(r.ms).toBeLessThan(2000);
  });

  it('refuses a chunked body once it passes the cap (413)', async () => {
    const head =
      'POST /trpc/auth.login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n';
    const chunk = 'x'.repeat(64 * 1024);
    const r = await raw(t.url, head, (socket) => {
      // 1.25 MiB: past the 1 MiB + 2 KiB cap, then the socket waits for the answer.
      for (let i = 0; i < 20; i++) socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      return () => undefined;
    });
    expect(r.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(r.text).toContain('PAYLOAD_TOO_LARGE');
  });

  it('refuses a batch over the cap before any call runs, and counts an allowed batch as its calls', async () => {
    const batch = (n: number, username: string) =>
      fetch(`${t.url}/trpc/${Array(n).fill('auth.login').join(',')}?batch=1`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(
          Object.fromEntries(
            Array.from({ length: n }, (_, i) => [i, { username, password: 'wrong-password' }]),
          ),
        ),
      });
    const over = await batch(6, 'batch-over');
    expect(over.status).toBe(400);
    const body = (await over.json()) as { error: { message: string; data: { studioCode: string } } };
    expect(body.error.data.studioCode).toBe('LIMIT_EXCEEDED');
    expect(body.error.message).toMatch(/at most 5 calls \(this one has 6\)/);
    // Nothing of it ran: the login limit (5 a minute per name and address) is untouched for that name.
    const single = await t.call('mutation', 'auth.login', {
      username: 'batch-over',
      password: 'wrong-password',
    });
    expect(single.body.error?.data.studioCode).toBe('INVALID_CREDENTIALS');

    // A batch at the cap runs, and each of its calls takes one from the limiter: the next login is refused.
    const atCap = await batch(5, 'batch-at-cap');
    const results = (await atCap.json()) as { error?: { data: { studioCode: string } } }[];
    expect(results.map((r) => r.error?.data.studioCode)).toEqual(Array(5).fill('INVALID_CREDENTIALS'));
    const next = await t.call('mutation', 'auth.login', {
      username: 'batch-at-cap',
      password: 'wrong-password',
    });
    expect(next.body.error?.data.studioCode).toBe('RATE_LIMITED');
  });

  it('does not cut a terminal or an SSE stream that lives longer than the deadline', async () => {
    const input = encodeURIComponent(JSON.stringify({ sessionId }));
    const stream = sse(`${t.url}/trpc/events.subscribe?input=${input}`, token);
    const socket = new WebSocket(`${t.url.replace(/^http/, 'ws')}/terminal`);
    let output = '';
    let closed = false;
    socket.on('message', (data, isBinary) => {
      output += isBinary ? Buffer.from(data as Buffer).toString() : data.toString();
    });
    socket.on('close', () => {
      closed = true;
    });
    try {
      await once(socket, 'open');
      socket.send(JSON.stringify({ type: 'auth', token, sessionId }));
      await until(() => output.includes('"type":"ready"'), 'the terminal to open');
      await until(() => stream.text().includes('event: connected'), 'the stream to connect');
      // Past the 2 s deadline (and a check of it) both still work.
      await new Promise((r) => setTimeout(r, 3500));
      expect(closed).toBe(false);
      socket.send(JSON.stringify({ type: 'input', data: 'echo still-$((20+22))\n' }));
      await until(() => output.includes('still-42'), 'the terminal to answer');
      await admin.exec.run.mutate({ sessionId, command: ['true'] });
      await until(() => stream.text().includes('exec.started'), 'an event on the stream');
    } finally {
      socket.close();
      stream.abort();
    }
  });

  it('sends a retry hint at the start of every SSE stream', async () => {
    const input = encodeURIComponent(JSON.stringify({ sessionId }));
    const stream = sse(`${t.url}/trpc/events.subscribe?input=${input}`, token);
    try {
      await until(() => stream.text().includes('event: connected'), 'the stream to connect');
      expect(stream.text().startsWith('retry: 2000\nevent: connected\n')).toBe(true);
    } finally {
      stream.abort();
    }
  });
});

// Each test boots its own API on a fresh PGlite: seconds, more on a loaded machine.
describe('draining', { timeout: 90_000 }, () => {
  it('refuses new work (503, Retry-After), reports draining, tells streams to go away, lets running work finish', async () => {
    const t = await startTestApi({ backends: [new FakeBackend()], env: { STUDIO_DRAIN_SECONDS: '40' } });
    try {
      const token = await t.login('admin', ADMIN_PASSWORD);
      const admin = createStudioClient({ url: t.url, token });
      const { id: sessionId } = await admin.sessions.create.mutate({ image: IMAGE });
      const bearer = { authorization: `Bearer ${token}` };
      const events = sse(
        `${t.url}/trpc/events.subscribe?input=${encodeURIComponent(JSON.stringify({ sessionId }))}`,
        token,
      );
      await until(() => events.text().includes('event: connected'), 'the events stream');
      const running = admin.exec.run.mutate({ sessionId, command: ['sh', '-c', 'sleep 2; echo finished'] });
      await until(() => events.text().includes('exec.started'), 'the exec to start');

      const started = Date.now();
      const closing = t.api.close(40_000);

      const ready = await fetch(`${t.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(ready.headers.get('retry-after')).toBe('2');
      expect(await ready.json()).toMatchObject({ ok: false, draining: true });

      const refused = await t.call('mutation', 'sessions.create', { image: IMAGE }, bearer);
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('2');
      expect(refused.headers.get('connection')).toBe('close');
      expect(refused.body.error?.data.studioCode).toBe('UNAVAILABLE');
      expect(refused.body.error?.message).toMatch(/shutting down/);
      // Reads still answer.
      expect((await t.call('query', 'auth.me', undefined, bearer)).status).toBe(200);

      // The idle stream was told to go away with a code tRPC's SSE link retries (SERVICE_UNAVAILABLE).
      await until(() => events.text().includes('event: serialized-error'), 'the going-away signal', 5000);
      const error = events.text().split('event: serialized-error\ndata: ')[1]?.split('\n')[0] ?? '';
      expect(JSON.parse(error)).toMatchObject({
        data: { code: 'SERVICE_UNAVAILABLE', httpStatus: 503, studioCode: 'UNAVAILABLE' },
      });
      // A new subscription while draining is refused the same (retryable) way.
      const late = sse(
        `${t.url}/trpc/events.subscribe?input=${encodeURIComponent(JSON.stringify({ sessionId }))}`,
        token,
      );
      await until(() => late.text().includes('"studioCode":"UNAVAILABLE"'), 'the late stream refused');

      // The running exec finishes and its caller gets the result; the drain then ends without waiting 40 s.
      expect((await running).stdout).toBe('finished\n');
      await closing;
      expect(Date.now() - started).toBeLessThan(20_000);
      events.abort();
      late.abort();
    } finally {
      await t.close();
    }
  });

  it('ends work still running when the drain time is up', async () => {
    const t = await startTestApi({ backends: [new FakeBackend()] });
    try {
      const token = await t.login('admin', ADMIN_PASSWORD);
      const admin = createStudioClient({ url: t.url, token });
      const { id: sessionId } = await admin.sessions.create.mutate({ image: IMAGE });
      const running = admin.exec.run.mutate({ sessionId, command: ['sleep', '30'] }).then(
        () => 'finished',
        () => 'cut',
      );
      await new Promise((r) => setTimeout(r, 500));
      const started = Date.now();
      await t.api.close(1000);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(await running).toBe('cut');
    } finally {
      await t.close();
    }
  });
});

/** A TCP proxy to PostgreSQL that the test can take away: a real server going down, for this test only. */
async function proxyTo(target: URL): Promise<{ port: number; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: TcpServer = createTcpServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as { port: number }).port,
    stop: async () => {
      const closed = new Promise((resolve) => server.close(resolve));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

describe('the store goes down', { timeout: 90_000 }, () => {
  async function expectUnavailable(t: TestApi, token: string) {
    const bearer = { authorization: `Bearer ${token}` };
    for (const [kind, path, input] of [
      ['query', 'sessions.list', undefined],
      ['mutation', 'auth.login', { username: 'admin', password: ADMIN_PASSWORD }],
    ] as const) {
      const r = await t.call(kind, path, input, bearer);
      expect(r.status, `${path}: ${JSON.stringify(r.body)}`).toBe(503);
      expect(r.headers.get('retry-after')).toBe('5');
      expect(r.body.error?.data.studioCode).toBe('UNAVAILABLE');
      expect(r.body.error?.message).toMatch(/database is unavailable/);
      expect(JSON.stringify(r.body)).not.toMatch(/127\.0\.0\.1|ECONNREFUSED|PGlite/);
    }
    const ready = await fetch(`${t.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ ok: false, store: false });
  }

  it('PGlite closed under the API: 503 UNAVAILABLE with Retry-After, not INTERNAL 500', async () => {
    const db = await openDb({});
    const t = await startTestApi({ backends: [new FakeBackend()], db });
    try {
      const token = await t.login('admin', ADMIN_PASSWORD);
      await db.close();
      await expectUnavailable(t, token);
    } finally {
      await t.close().catch(() => undefined);
    }
  });

  const skip = postgresSkipReason();
  it.skipIf(skip !== undefined)(
    `PostgreSQL taken away (connections cut, then refused): 503 UNAVAILABLE with Retry-After${skip ? ` (skipped: ${skip})` : ''}`,
    async () => {
      const database = await createTestDatabase('postgres', { databaseUrl: TEST_DATABASE_URL, ci: false });
      const target = new URL(database.options.databaseUrl as string);
      const proxy = await proxyTo(target);
      const via = new URL(target);
      via.hostname = '127.0.0.1';
      via.port = String(proxy.port);
      const db = await openDb({ databaseUrl: via.toString() });
      const t = await startTestApi({ backends: [new FakeBackend()], db });
      try {
        const token = await t.login('admin', ADMIN_PASSWORD);
        await proxy.stop();
        await expectUnavailable(t, token);
      } finally {
        await t.close().catch(() => undefined);
        await database.dispose();
      }
    },
  );
});
