import { createServer } from 'node:http';
import next from 'next';
import { ensureBuild, WEB_ROOT } from './scripts/build.ts';
import { loadWebEnv } from './src/env.ts';
import { createApiProxy } from './src/server/api-proxy.ts';

// The web server: Next's pages, plus a streaming proxy of /trpc/* (HTTP and SSE) and the /terminal WebSocket
// to the API (src/server/api-proxy.ts, on http-proxy-3), so the browser talks to one origin. A custom node:http
// server instead of next.config rewrites: rewrites do not proxy WebSocket upgrades in `next start`, and piping
// raw responses keeps SSE unbuffered.

const env = loadWebEnv();
const proxy = createApiProxy({ apiUrl: env.apiUrl });

ensureBuild();
const app = next({ dev: false, dir: WEB_ROOT, hostname: env.host, port: env.port });
await app.prepare();
const handle = app.getRequestHandler();
const upgradeNext = app.getUpgradeHandler();

const server = createServer((req, res) => {
  if (proxy.web(req, res)) return;
  res.setHeader('X-Content-Type-Options', 'nosniff');
  handle(req, res).catch(() => {
    if (!res.headersSent) res.writeHead(500);
    res.end('internal error');
  });
});
server.on('upgrade', (req, socket, head) => {
  if (!proxy.upgrade(req, socket, head)) upgradeNext(req, socket, head).catch(() => socket.destroy());
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
    proxy.close();
    app.close?.().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
