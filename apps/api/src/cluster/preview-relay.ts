import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ProxyServer } from 'http-proxy-3';
import type { AppDeps } from '../core/context.ts';
import { AppError } from '../core/errors.ts';
import { listenPreviewServer, type PreviewServer } from '../preview/preview.ts';
import type { Forwarder } from './forwarder.ts';
import type { ForwardedClient } from './node-guard.ts';

function plain(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`${message}\n`);
}

/**
 * An API replica's preview listener (issue 23): the preview site's host names (`<port>-<label>.<domain>`, E2B's
 * `<port>-<sandbox id>.<domain>`) name a session, whose node serves them. The replica finds that node and passes
 * the request (or WebSocket upgrade) on untouched, Host and cookies included, with its signature; the node's
 * preview proxy then applies every preview rule (grants, their host, stripped credentials, limits) exactly as on
 * one box. Nothing here reads or sets a cookie.
 */
export async function startPreviewRelay(
  deps: Pick<AppDeps, 'previews' | 'logger'>,
  forwarder: Forwarder,
  options: { host: string; port: number; clientOf: (req: IncomingMessage) => ForwardedClient },
): Promise<PreviewServer> {
  const proxy = new ProxyServer({ xfwd: false, followRedirects: false });
  const connections = new Set<Duplex>();

  const target = async (req: IncomingMessage): Promise<string> => {
    const node = await forwarder.nodeForPreviewHost(req.headers.host, deps.previews.hostMode.domain);
    if (node === undefined)
      throw new AppError('NOT_FOUND', 'no such preview: open the link from previews.create again');
    if (node instanceof AppError) throw node;
    if (!node.previewUrl)
      throw new AppError('UNAVAILABLE', 'the node running this session serves no previews');
    // Signed over method, path and client; the body streams through unread (previews have no size of their own).
    Object.assign(
      req.headers,
      forwarder.signedHeaders(req.method ?? 'GET', req.url ?? '/', null, options.clientOf(req)),
    );
    return node.previewUrl;
  };

  const server = createServer((req, res) => {
    target(req).then(
      (url) =>
        proxy.web(req, res, { target: url }, () => {
          if (!res.headersSent) plain(res, 502, 'the node running this preview did not answer; retry');
          else res.destroy();
        }),
      (error: unknown) =>
        plain(
          res,
          error instanceof AppError && error.code === 'NOT_FOUND' ? 404 : 502,
          (error as Error).message,
        ),
    );
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
    target(req).then(
      (url) => proxy.ws(req, socket, head, { target: url }, () => socket.destroy()),
      () => socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n'),
    );
  });
  return listenPreviewServer(server, {
    ...options,
    grants: deps.previews,
    connections,
    onClose: () => proxy.close(),
  });
}
