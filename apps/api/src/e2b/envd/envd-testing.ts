import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { App } from '../../app.ts';
import type { Principal } from '../../auth/auth.ts';
import {
  createEnvdHandler,
  type EnvdHandler,
  type EnvdHandlerOptions,
  type EnvdTarget,
} from './envd-handler.ts';

/** An envd handler served on 127.0.0.1 for one session, as the E2B routing layer would serve it (tests). */
export interface EnvdTestServer {
  url: string;
  handler: EnvdHandler;
  target: EnvdTarget;
  close(): Promise<void>;
}

/** Serves `createEnvdHandler(app.deps)` for `sessionId` acting as `principal` at the root of a local server. */
export async function serveEnvd(
  app: App,
  sessionId: string,
  principal: Principal,
  options: EnvdHandlerOptions & { envs?: Record<string, string> } = {},
): Promise<EnvdTestServer> {
  const handler = createEnvdHandler(app.deps, options);
  const target: EnvdTarget = {
    sessionId,
    sandboxId: randomBytes(16).toString('hex'),
    principal,
    accessToken: randomBytes(24).toString('base64url'),
    envs: options.envs ?? {},
    ip: '127.0.0.1',
    requestId: null,
  };
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://envd').pathname;
    void handler.handle(req, res, path, target);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    handler,
    target,
    async close() {
      handler.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
