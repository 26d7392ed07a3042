import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiProxy, createApiProxy } from './api-proxy.ts';

// The web server's proxy against a real upstream on loopback (a stand-in for the API that records what it
// receives), through a real node:http server as in server.ts.

interface Seen {
  url: string;
  headers: IncomingHttpHeaders;
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** One raw HTTP/1.1 exchange: what came back until `until` matched or the socket closed. */
async function raw(port: number, text: string, until?: RegExp): Promise<{ data: string; closed: boolean }> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(text);
  let data = '';
  let closed = false;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 3000);
    socket.on('data', (chunk) => {
      data += chunk.toString();
      if (until?.test(data)) {
        clearTimeout(timer);
        resolve();
      }
    });
    socket.on('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve();
    });
  });
  socket.destroy();
  return { data, closed };
}

describe('web server API proxy', () => {
  const seen: Seen[] = [];
  let upstream: Server;
  let web: Server;
  let proxy: ApiProxy;
  let webPort = 0;
  let releaseEvent: () => void = () => undefined;
  let eventStreamClosed: Promise<unknown> = Promise.resolve();
  let terminal: Socket | undefined;

  beforeAll(async () => {
    upstream = createServer((req, res) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      if (req.url?.startsWith('/trpc/events')) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.flushHeaders();
        // The first event is sent only when the test has seen the headers arrive on their own.
        releaseEvent = () => res.write('data: first\n\n');
        eventStreamClosed = once(res, 'close');
        return;
      }
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', 'keep-alive': 'timeout=5' });
        res.end(JSON.stringify({ url: req.url, body }));
      });
    });
    upstream.on('upgrade', (req, socket: Socket) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      if (req.headers.origin === 'http://evil.example') {
        socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        return;
      }
      terminal = socket;
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n',
      );
      socket.on('data', (chunk) => socket.write(`echo:${chunk}`));
    });
    const apiPort = await listen(upstream);
    proxy = createApiProxy({ apiUrl: `http://127.0.0.1:${apiPort}` });
    web = createServer((req, res) => {
      if (proxy.web(req, res)) return;
      res.writeHead(404);
      res.end('served by next');
    });
    web.on('upgrade', (req, socket, head) => {
      if (!proxy.upgrade(req, socket, head)) socket.end('HTTP/1.1 418 Not Ours\r\nConnection: close\r\n\r\n');
    });
    webPort = await listen(web);
  });

  afterAll(async () => {
    proxy?.close();
    web?.closeAllConnections();
    upstream?.closeAllConnections();
    await Promise.all([new Promise((r) => web?.close(r)), new Promise((r) => upstream?.close(r))]);
  });

  it('drops the forwarding headers a browser sends and names the client by its socket address', async () => {
    seen.length = 0;
    const res = await fetch(`http://127.0.0.1:${webPort}/trpc/auth.me?input=1`, {
      headers: {
        'x-forwarded-for': '6.6.6.6',
        'x-forwarded-host': 'evil.example',
        'x-forwarded-proto': 'https',
        forwarded: 'for=6.6.6.6;proto=https',
        'x-real-ip': '6.6.6.6',
        cookie: 'studio_token=abc',
        origin: 'http://127.0.0.1:3000',
      },
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ url: '/trpc/auth.me?input=1', body: '' });
    const headers = seen[0]?.headers ?? {};
    expect(headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(headers['x-forwarded-proto']).toBe('http');
    expect(headers.forwarded).toBeUndefined();
    expect(headers['x-forwarded-host']).toBeUndefined();
    expect(headers['x-real-ip']).toBeUndefined();
    // What the API needs to authenticate and check the origin passes unchanged; Host stays the web origin's.
    expect(headers.cookie).toBe('studio_token=abc');
    expect(headers.origin).toBe('http://127.0.0.1:3000');
    expect(headers.host).toBe(`127.0.0.1:${webPort}`);
    // The API's hop-by-hop headers stay on its own connection.
    expect(res.headers.get('keep-alive')).toBeNull();
  });

  it('streams request bodies (mutations) to the API', async () => {
    const res = await fetch(`http://127.0.0.1:${webPort}/trpc/files.write`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ path: 'a.txt', content: 'x'.repeat(100_000) }),
    });
    const body = (await res.json()) as { body: string };
    expect(JSON.parse(body.body)).toEqual({ path: 'a.txt', content: 'x'.repeat(100_000) });
  });

  it('streams SSE unbuffered: headers before the first event, each event as it is sent', async () => {
    const controller = new AbortController();
    const res = await fetch(`http://127.0.0.1:${webPort}/trpc/events.subscribe?input=1`, {
      signal: controller.signal,
    });
    // The upstream has written no event yet: the response is already here.
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    expect(res.headers.get('content-length')).toBeNull();
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    releaseEvent();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe('data: first\n\n');
    // The page leaving ends the API's stream too.
    controller.abort();
    await eventStreamClosed;
  });

  it('proxies only /trpc/ as the API will read the path', async () => {
    for (const path of ['/trpc/../healthz', '/trpc/%2e%2e/healthz', '/trpcx/a', '/login']) {
      const { data } = await raw(webPort, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(data, path).toMatch(/^HTTP\/1\.1 404 .*served by next/s);
    }
  });

  it('proxies the /terminal WebSocket upgrade, with the same header rules, and only that one', async () => {
    seen.length = 0;
    const upgrade = (path: string, extra = '') =>
      `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n${extra}\r\n`;
    const socket = connect(webPort, '127.0.0.1');
    await once(socket, 'connect');
    socket.write(upgrade('/terminal'));
    const [handshake] = (await once(socket, 'data')) as [Buffer];
    expect(handshake.toString()).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    socket.write('ping');
    const [echo] = (await once(socket, 'data')) as [Buffer];
    expect(echo.toString()).toBe('echo:ping');
    // The browser leaving ends the API's socket too.
    const upstreamEnded = once(terminal as Socket, 'end');
    socket.destroy();
    await upstreamEnded;
    terminal?.destroy();
    expect(seen[0]?.url).toBe('/terminal');
    expect(seen[0]?.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen[0]?.headers['x-real-ip']).toBeUndefined();

    for (const path of ['/terminal/../_next/webpack-hmr', '/trpc/events.subscribe', '/terminalx']) {
      const { data } = await raw(webPort, upgrade(path), /\r\n\r\n/);
      expect(data, path).toMatch(/^HTTP\/1\.1 418 /);
    }
    expect(seen).toHaveLength(1);
  });

  it('passes a refused upgrade on and closes the socket', async () => {
    const { data, closed } = await raw(
      webPort,
      'GET /terminal HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nOrigin: http://evil.example\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    expect(data).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
    expect(closed).toBe(true);
  });

  it('answers 502 API_UNREACHABLE when the API is down, with no cause, stack or address', async () => {
    const down = createApiProxy({ apiUrl: 'http://127.0.0.1:1' });
    const server = createServer((req, res) => {
      if (!down.web(req, res)) res.end();
    });
    server.on('upgrade', (req, socket, head) => down.upgrade(req, socket, head));
    const port = await listen(server);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/trpc/auth.me`);
      expect(res.status).toBe(502);
      const text = await res.text();
      expect(JSON.parse(text)).toEqual({
        error: { message: 'the Studio API is not reachable', data: { studioCode: 'API_UNREACHABLE' } },
      });
      expect(text).not.toMatch(/ECONNREFUSED|127\.0\.0\.1:1|\bat /);
      // A WebSocket to a down API is closed, not left hanging.
      const { closed } = await raw(
        port,
        'GET /terminal HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
      );
      expect(closed).toBe(true);
    } finally {
      down.close();
      await new Promise((r) => server.close(r));
    }
  });

  it('leaves the request alone when it is not API traffic', () => {
    expect(proxy.web({ url: '/_next/static/a.js', headers: {} } as never, {} as never)).toBe(false);
    expect(
      proxy.upgrade({ url: '/_next/webpack-hmr', headers: {} } as never, {} as never, Buffer.alloc(0)),
    ).toBe(false);
  });
});
