import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import next from 'next';
import { ensureBuild, WEB_ROOT } from './scripts/build.ts';
import { loadWebEnv } from './src/env.ts';

// The web server: Next's pages, plus a streaming proxy of /trpc/* (HTTP and SSE) and the /terminal WebSocket
// to the API, so the browser talks to one origin. A custom node:http server instead of next.config rewrites:
// rewrites do not proxy WebSocket upgrades in `next start`, and piping raw responses keeps SSE unbuffered.

const env = loadWebEnv();
const api = new URL(env.apiUrl);

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
]);

// Forwarding headers a client sent are not passed on: only this server says who the client is.
const FORWARDED = new Set([
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-real-ip',
]);

function forwardHeaders(req: IncomingMessage, upgrade: boolean): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || HOP_BY_HOP.has(k) || k === 'upgrade' || FORWARDED.has(k)) continue;
    out[k] = v;
  }
  // The browser's own address, never what it claims: the API uses it for per-address login limits when it
  // trusts this proxy (STUDIO_TRUST_PROXY=true). Behind Traefik, /trpc and /terminal go to the API directly.
  if (req.socket.remoteAddress) out['x-forwarded-for'] = req.socket.remoteAddress;
  out['x-forwarded-proto'] = 'http';
  // Host stays the web origin's; the browser's Origin passes unchanged and the API accepts it through
  // STUDIO_ORIGINS (scripts/studio.sh sets it to this server's origin).
  if (upgrade) {
    out.connection = 'Upgrade';
    out.upgrade = String(req.headers.upgrade ?? 'websocket');
  }
  return out;
}

function proxyHttp(req: IncomingMessage, res: ServerResponse): void {
  const upstream = httpRequest(
    {
      host: api.hostname,
      port: api.port || 80,
      method: req.method,
      path: req.url,
      headers: forwardHeaders(req, false),
    },
    (up) => {
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(up.headers))
        if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
      res.writeHead(up.statusCode ?? 502, headers);
      res.flushHeaders();
      up.pipe(res);
    },
  );
  upstream.on('error', () => {
    if (!res.headersSent) {
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error: { message: 'the Studio API is not reachable', data: { studioCode: 'API_UNREACHABLE' } },
        }),
      );
    } else {
      res.destroy();
    }
  });
  res.on('close', () => upstream.destroy());
  req.pipe(upstream);
}

function proxyUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const upstream = httpRequest({
    host: api.hostname,
    port: api.port || 80,
    method: 'GET',
    path: req.url,
    headers: forwardHeaders(req, true),
  });
  upstream.on('upgrade', (up, upSocket, upHead) => {
    const lines = [`HTTP/1.1 ${up.statusCode ?? 101} ${up.statusMessage ?? 'Switching Protocols'}`];
    for (let i = 0; i < up.rawHeaders.length; i += 2)
      lines.push(`${up.rawHeaders[i]}: ${up.rawHeaders[i + 1]}`);
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (upHead.length > 0) socket.write(upHead);
    if (head.length > 0) upSocket.write(head);
    upSocket.pipe(socket).pipe(upSocket);
    upSocket.on('error', () => socket.destroy());
    socket.on('error', () => upSocket.destroy());
    upSocket.on('close', () => socket.destroy());
    socket.on('close', () => upSocket.destroy());
  });
  upstream.on('response', (up) => {
    // Refused before the upgrade (e.g. 403 for a foreign Origin): pass the status on and close.
    socket.end(`HTTP/1.1 ${up.statusCode ?? 502} ${up.statusMessage ?? ''}\r\nConnection: close\r\n\r\n`);
    up.resume();
  });
  upstream.on('error', () => socket.destroy());
  socket.on('error', () => upstream.destroy());
  upstream.end();
}

ensureBuild();
const app = next({ dev: false, dir: WEB_ROOT, hostname: env.host, port: env.port });
await app.prepare();
const handle = app.getRequestHandler();
const upgradeNext = app.getUpgradeHandler();

const server = createServer((req, res) => {
  const path = req.url ?? '/';
  if (path.startsWith('/trpc/')) {
    proxyHttp(req, res);
    return;
  }
  res.setHeader('X-Content-Type-Options', 'nosniff');
  handle(req, res).catch(() => {
    if (!res.headersSent) res.writeHead(500);
    res.end('internal error');
  });
});
server.on('upgrade', (req, socket, head) => {
  if ((req.url ?? '').split('?')[0] === '/terminal') proxyUpgrade(req, socket, head);
  else upgradeNext(req, socket, head).catch(() => socket.destroy());
});
server.listen(env.port, env.host, () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : env.port;
  process.stderr.write(`Claude Studio IDE: open http://${env.host}:${port} (API ${env.apiUrl})\n`);
  process.stdout.write(`${JSON.stringify({ msg: 'web listening', url: `http://${env.host}:${port}` })}\n`);
});

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    server.close();
    server.closeAllConnections();
    app.close?.().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
