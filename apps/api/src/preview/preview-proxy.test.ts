import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { type AddressInfo, connect, createServer as createTcpServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { Sandbox } from '@studio/isolation';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  PREVIEW_COOKIE,
  PreviewGrants,
  type PreviewServer,
  type PreviewServerDeps,
  scrubResponse,
  startPreviewServer,
} from './preview.ts';

// The preview proxy with a fake sandbox whose connect(port) is a plain Duplex (no socket methods, as the
// agent's streams) bridged to a dev server in this process. The Docker tests prove the same against a real
// sandbox; these run in a second and cover what a real dev server rarely does (cookie planting, hop-by-hop).

const LIMIT = 64 * 1024;

/** A byte stream to `port` that is not a net.Socket, as `sandbox.connect()` returns. */
function bridge(port: number): Duplex {
  const tcp = connect(port, '127.0.0.1');
  const stream = new Duplex({
    allowHalfOpen: true,
    read() {
      tcp.resume();
    },
    write(chunk, _encoding, callback) {
      tcp.write(chunk, callback);
    },
    final(callback) {
      tcp.end();
      callback();
    },
    destroy(error, callback) {
      tcp.destroy();
      callback(error);
    },
  });
  tcp.on('data', (chunk) => {
    if (!stream.push(chunk)) tcp.pause();
  });
  tcp.on('end', () => stream.push(null));
  tcp.on('error', (error) => stream.destroy(error));
  return stream;
}

async function listen(server: Server | ReturnType<typeof createTcpServer>): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** One raw exchange on the preview port: the text until the socket closed or `until` matched. */
async function raw(port: number, text: string, until: RegExp): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(text);
  let data = '';
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 3000);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
      if (until.test(data)) done();
    });
    socket.on('close', done);
  });
  socket.destroy();
  return data;
}

describe('preview proxy (fake sandbox stream)', () => {
  const connects: number[] = [];
  let dev: Server;
  let canary: ReturnType<typeof createTcpServer>;
  let canaryPort = 0;
  let canaryHits = 0;
  let preview: PreviewServer;
  let port = 0;
  let cookie = '';
  const grants = new PreviewGrants();

  beforeAll(async () => {
    canary = createTcpServer((socket) => {
      canaryHits += 1;
      socket.destroy();
    });
    canaryPort = await listen(canary);
    dev = createHttpServer((req, res) => {
      if (req.url === '/headers') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(req.headers));
      } else if (req.url === '/redirect') {
        res.writeHead(302, { location: `http://127.0.0.1:${canaryPort}/` });
        res.end();
      } else if (req.url === '/cookies') {
        res.writeHead(200, {
          'set-cookie': [
            `${PREVIEW_COOKIE}=; Max-Age=0`,
            'studio_token=planted; Path=/',
            '__Host-studio_token=planted; Path=/; Secure',
            '__HOST-studio_token=planted; Path=/; Secure',
            'studio_token',
            'app=1; Path=/',
          ],
          'keep-alive': 'timeout=99',
        });
        res.end('cookies');
      } else if (req.url === '/big') {
        res.end(Buffer.alloc(LIMIT * 3, 97));
      } else if (req.url !== '/slow') {
        res.end('hello from the sandbox');
      }
    });
    dev.on('upgrade', (req, socket: Socket) => {
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSet-Cookie: ${PREVIEW_COOKIE}=; Max-Age=0\r\nSet-Cookie: hmr=1\r\n\r\n`,
      );
      socket.write(`hello-ws ${req.headers.cookie ?? 'no-cookie'} ${req.headers.authorization ?? 'no-auth'}`);
      socket.on('data', (chunk) => socket.write(`echo:${chunk}`));
      socket.on('end', () => socket.end());
    });
    const devPort = await listen(dev);
    const sandbox = {
      connect: async (p: number) => {
        connects.push(p);
        // Only the "sandbox's" port 3000 has a listener; the agent refuses others.
        if (p !== 3000) throw new Error('nothing listens there');
        return bridge(devPort);
      },
    } as unknown as Sandbox;
    const deps: PreviewServerDeps = {
      policy: { preview: { timeoutMs: 500, maxResponseBytes: LIMIT } },
      previews: grants,
      sessions: {
        withSandbox: (async (
          userId: string,
          sessionId: string,
          _audit: unknown,
          fn: (s: Sandbox) => unknown,
        ) => {
          if (userId !== 'alice' || sessionId !== 'ses_a') throw new Error('not running');
          return fn(sandbox);
        }) as unknown as PreviewServerDeps['sessions']['withSandbox'],
      },
    };
    preview = await startPreviewServer(deps, { host: '127.0.0.1', port: 0 });
    port = Number(new URL(preview.url).port);
    const link = grants.linkFor({ sessionId: 'ses_a', port: 3000, ...grants.create('alice', 'ses_a', 3000) });
    const landed = await fetch(link ?? '', { redirect: 'manual' });
    cookie = (landed.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    expect(cookie).toMatch(new RegExp(`^${PREVIEW_COOKIE}=`));
  });

  afterAll(async () => {
    await preview?.close();
    dev?.closeAllConnections();
    await new Promise((r) => dev?.close(r));
    await new Promise((r) => canary?.close(r));
  });

  it('forwards only through sandbox.connect, without credentials, Studio cookies or forwarding headers', async () => {
    connects.length = 0;
    expect(await (await fetch(`${preview.url}/`, { headers: { cookie } })).text()).toBe(
      'hello from the sandbox',
    );
    const echoed = (await (
      await fetch(`${preview.url}/headers`, {
        headers: {
          cookie: `${cookie}; studio_token=secret-login; __Host-studio_token=secret; app=1`,
          authorization: 'Bearer secret',
          'proxy-authorization': 'Basic x',
          'x-forwarded-for': '6.6.6.6',
          forwarded: 'for=6.6.6.6',
          'x-real-ip': '6.6.6.6',
        },
      })
    ).json()) as IncomingHttpHeaders;
    expect(echoed.cookie).toBe('app=1');
    for (const name of ['authorization', 'proxy-authorization', 'x-forwarded-for', 'forwarded', 'x-real-ip'])
      expect(echoed[name], name).toBeUndefined();
    expect(echoed.host).toBe('127.0.0.1:3000');
    expect(connects).toEqual([3000, 3000]);
  });

  it('never lets the sandbox set or clear Studio cookies, nor pass hop-by-hop headers', async () => {
    const res = await fetch(`${preview.url}/cookies`, { headers: { cookie } });
    expect(await res.text()).toBe('cookies');
    expect(res.headers.getSetCookie()).toEqual(['app=1; Path=/']);
    expect(res.headers.get('keep-alive')).toBeNull();
  });

  it('passes redirects back unfollowed and never dials the host', async () => {
    const res = await fetch(`${preview.url}/redirect`, { headers: { cookie }, redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(`http://127.0.0.1:${canaryPort}/`);
    // A grant for a port where only the host listens: the sandbox has nothing there.
    const other = grants.create('alice', 'ses_a', canaryPort);
    const refused = await fetch(`${preview.url}/`, {
      headers: { cookie: `${PREVIEW_COOKIE}=${other.token}` },
    });
    expect(refused.status).toBe(502);
    expect(canaryHits).toBe(0);
  });

  it('cuts bodies past the limit and answers 504 for a silent server', async () => {
    // The body is cut (the connection drops): count what arrived before it did.
    const big = await fetch(`${preview.url}/big`, { headers: { cookie } });
    const reader = (big.body as ReadableStream<Uint8Array>).getReader();
    let size = 0;
    let cut = false;
    for (;;) {
      const chunk = await reader.read().catch(() => null);
      if (chunk === null) {
        cut = true;
        break;
      }
      if (chunk.done) break;
      size += chunk.value.byteLength;
    }
    expect(cut).toBe(true);
    expect(size).toBeLessThanOrEqual(LIMIT);
    const slow = await fetch(`${preview.url}/slow`, { headers: { cookie } });
    expect(slow.status).toBe(504);
    expect(await slow.text()).toBe('the sandbox did not answer within 500 ms\n');
  });

  it('refuses requests without a valid grant', async () => {
    expect((await fetch(`${preview.url}/`)).status).toBe(401);
    expect(
      (await fetch(`${preview.url}/`, { headers: { cookie: `${PREVIEW_COOKIE}=${'A'.repeat(43)}` } })).status,
    ).toBe(401);
    const upgrade = await raw(
      port,
      'GET /hmr HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5a2V5\r\nSec-WebSocket-Version: 13\r\n\r\n',
      /\r\n\r\n/,
    );
    expect(upgrade).toMatch(/^HTTP\/1\.1 401 /);
  });

  it('proxies WebSocket upgrades through the sandbox stream, without credentials or Studio cookies', async () => {
    const text = await raw(
      port,
      `GET /hmr HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5a2V5\r\nSec-WebSocket-Version: 13\r\nCookie: ${cookie}; studio_token=secret\r\nAuthorization: Bearer secret\r\n\r\n`,
      /no-auth/,
    );
    expect(text).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(text.toLowerCase()).toContain('upgrade: websocket');
    expect(text).toContain('set-cookie: hmr=1');
    expect(text).not.toContain(`${PREVIEW_COOKIE}=`);
    expect(text).toContain('hello-ws no-cookie no-auth');
  });
});

describe('scrubResponse', () => {
  it('drops Studio cookies by name whatever their case, and nameless ones; keeps the rest', () => {
    const headers: IncomingHttpHeaders = {
      'set-cookie': [
        'Studio_Token=x',
        '__host-studio_token=x',
        ' studio_preview =x',
        '=x',
        'noequals',
        'a=1',
      ],
      connection: 'close',
      'transfer-encoding': 'chunked',
    };
    scrubResponse(headers, false);
    // Browsers match the `__Host-` prefix without case; the names are compared so too (stricter than needed).
    expect(headers).toEqual({ 'set-cookie': ['a=1'] });
    const switching: IncomingHttpHeaders = {
      'set-cookie': ['studio_preview=x'],
      connection: 'Upgrade',
      upgrade: 'websocket',
    };
    scrubResponse(switching, true);
    expect(switching).toEqual({ connection: 'Upgrade', upgrade: 'websocket' });
  });
});
