import { createServer, type Server } from 'node:net';
import type { StudioClient, StudioClientError } from '@studio/client';
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { TestApi } from '../testing/api-fixture.ts';
import { dockerApiTest, dockerSkip, dockerTestBackend } from '../testing/docker-api.ts';

// The preview proxy against the real API and DockerBackend: a dev server inside the sandbox, canary listeners
// on the host's loopback that must never be reached. Sandboxes are labelled studio.test=preview.

const IMAGE = 'studio-sandbox:latest';
const _backend = dockerTestBackend;
const skip = dockerSkip;
const test = dockerApiTest('preview', {
  env: {
    STUDIO_PREVIEW_PORT: '0',
    STUDIO_POLICY: JSON.stringify({ preview: { timeoutMs: 1000, maxResponseBytes: 1024 * 1024 } }),
  },
});

const DEV_SERVER = `
const http = require('http');
const crypto = require('crypto');
const s = http.createServer((req, res) => {
  if (req.url === '/headers') { res.setHeader('content-type', 'application/json'); res.end(JSON.stringify(req.headers)); return; }
  if (req.url === '/redirect') { res.writeHead(302, { location: process.argv[2] }); res.end(); return; }
  if (req.url === '/cookies') { res.setHeader('set-cookie', ['studio_preview=; Max-Age=0', 'studio_token=planted; Path=/', 'app=1']); res.end('cookies'); return; }
  if (req.url === '/big') { res.end(Buffer.alloc(3 * 1024 * 1024, 97)); return; }
  if (req.url === '/slow') return;
  res.end('hello from the sandbox');
});
s.on('upgrade', (req, socket) => {
  const accept = crypto.createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: ' + accept + '\\r\\n\\r\\n');
  const msg = Buffer.from('hello-ws ' + (req.headers.cookie || 'no-cookie') + ' ' + (req.headers.authorization || 'no-auth'));
  socket.write(Buffer.concat([Buffer.from([0x81, msg.length]), msg]));
});
s.listen(3000, '127.0.0.1', () => console.log('listening'));
`;

/** A listener on the host's loopback at a port in the preview range, counting connections. */
async function canary(): Promise<{ server: Server; port: number; connections: () => number }> {
  let count = 0;
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 4000 + Math.floor(Math.random() * 5000);
    const server = createServer((socket) => {
      count += 1;
      socket.destroy();
    });
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (ok) return { server, port, connections: () => count };
  }
  throw new Error('no free canary port');
}

async function refusal(p: Promise<unknown>): Promise<StudioClientError> {
  return p.then(
    () => {
      throw new Error('expected a refusal');
    },
    (e: StudioClientError) => e,
  );
}

describe.skipIf(skip !== undefined)(`preview proxy on Docker${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let t: TestApi;
  let alice: StudioClient;
  let bob: StudioClient;
  let sessionId: string;
  let cookie: string;
  let base: string;
  let stopDev: () => void = () => undefined;
  const canaries: Awaited<ReturnType<typeof canary>>[] = [];

  test.beforeAll(async ({ api, alice: a, bob: b }) => {
    t = api;
    alice = a.client;
    bob = b.client;
    sessionId = (await alice.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 512 } })).id;
    canaries.push(await canary(), await canary());
    await alice.files.write.mutate({ sessionId, path: 'dev.js', content: DEV_SERVER });
    let listening = false;
    const sub = alice.exec.stream.subscribe(
      {
        sessionId,
        command: ['node', 'dev.js', `http://127.0.0.1:${canaries[0]?.port}/`],
        timeoutMs: 600_000,
      },
      {
        onData: (e) => {
          if (e.type === 'stdout' && e.data.includes('listening')) listening = true;
        },
      },
    );
    stopDev = () => sub.unsubscribe();
    const end = Date.now() + 20_000;
    while (!listening && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    expect(listening).toBe(true);

    const link = await alice.previews.create.mutate({ sessionId, port: 3000 });
    base = new URL(link.url).origin;
    expect(base).not.toBe(new URL(t.url).origin);
    const landed = await fetch(link.url, { redirect: 'manual' });
    expect(landed.status).toBe(302);
    cookie = (landed.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    expect(cookie).toMatch(/^studio_preview=/);
  });

  afterAll(async () => {
    stopDev();
    for (const c of canaries) c.server.close();
  });

  it('reaches the dev server in the sandbox, stripping credentials and Studio cookies both ways', async () => {
    const page = await fetch(`${base}/`, { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(await page.text()).toBe('hello from the sandbox');
    const echoed = (await (
      await fetch(`${base}/headers`, {
        headers: {
          cookie: `${cookie}; studio_token=secret-login; app=1`,
          authorization: 'Bearer secret',
          'x-forwarded-for': '6.6.6.6',
        },
      })
    ).json()) as Record<string, string>;
    expect(echoed.authorization).toBeUndefined();
    expect(echoed.cookie).toBe('app=1');
    expect(echoed['x-forwarded-for']).toBeUndefined();
    expect(echoed.host).toBe('127.0.0.1:3000');
    // Nor can the sandbox clear the grant or plant a sign-in (cookies ignore ports: it would reach the API).
    const planted = await fetch(`${base}/cookies`, { headers: { cookie } });
    expect(await planted.text()).toBe('cookies');
    expect(planted.headers.getSetCookie()).toEqual(['app=1']);
  });

  it('passes redirects back unfollowed and never dials the host loopback', async () => {
    const redirect = await fetch(`${base}/redirect`, { headers: { cookie }, redirect: 'manual' });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('location')).toBe(`http://127.0.0.1:${canaries[0]?.port}/`);
    // A preview of a port where only the HOST listens: the sandbox has nothing there.
    const port = canaries[1]?.port ?? 0;
    const link = await alice.previews.create.mutate({ sessionId, port });
    const landed = await fetch(link.url, { redirect: 'manual' });
    const otherCookie = (landed.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    expect((await fetch(`${base}/`, { headers: { cookie: otherCookie } })).status).toBe(502);
    expect(canaries.map((c) => c.connections())).toEqual([0, 0]);
  });

  it('refuses blocked ports, other users, and requests without a grant', async () => {
    for (const [port, code] of [
      [22, 'PORT_BLOCKED'],
      [80, 'PORT_BLOCKED'],
      [5432, 'PORT_BLOCKED'],
      [2999, 'PORT_OUT_OF_RANGE'],
      [10000, 'PORT_OUT_OF_RANGE'],
    ] as const) {
      expect((await refusal(alice.previews.create.mutate({ sessionId, port }))).code).toBe(code);
    }
    expect((await refusal(bob.previews.create.mutate({ sessionId, port: 3000 }))).code).toBe('NOT_FOUND');
    expect((await fetch(`${base}/`)).status).toBe(401);
    const forged = `studio_preview=${'A'.repeat(43)}`;
    expect((await fetch(`${base}/`, { headers: { cookie: forged } })).status).toBe(401);
    expect(
      (await fetch(`${base}/__studio/auth?token=${'A'.repeat(43)}`, { redirect: 'manual' })).status,
    ).toBe(401);
  });

  it('cuts oversized responses and times out silent servers', async () => {
    const big = await fetch(`${base}/big`, { headers: { cookie } });
    const body = await big.arrayBuffer().then(
      (b) => b.byteLength,
      () => -1,
    );
    expect(body).toBeLessThanOrEqual(1024 * 1024);
    expect((await fetch(`${base}/slow`, { headers: { cookie } })).status).toBe(504);
  });

  it('proxies WebSocket upgrades (hot reload) without Studio credentials', async () => {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/hmr`, {
      headers: { cookie: `${cookie}; studio_token=secret`, authorization: 'Bearer secret' },
    });
    const message = await new Promise<string>((resolve, reject) => {
      ws.on('message', (data) => resolve(String(data)));
      ws.on('error', reject);
    });
    expect(message).toBe('hello-ws no-cookie no-auth');
    ws.terminate();
    const anonymous = new WebSocket(`${base.replace(/^http/, 'ws')}/hmr`);
    const failed = await new Promise<string>((resolve) => anonymous.on('error', (e) => resolve(e.message)));
    expect(failed).toMatch(/401/);
  });
});
