import { createServer, type Server } from 'node:net';
import { describe, expect } from 'vitest';
import { isIsolationError } from '../../errors.ts';
import type { Sandbox } from '../../types.ts';
import { describeError, expectIsolationError, nonce, readStream, settle, waitFor } from '../fixtures.ts';
import type { ConformanceHarness } from '../harness.ts';

/** A python http.server in the sandbox serving a nonce; `stop()` cancels its exec. */
async function startHttpServer(
  sandbox: Sandbox,
  port: number,
): Promise<{ token: string; stop: () => Promise<void> } & AsyncDisposable> {
  const dir = nonce('http');
  const token = nonce('served');
  await sandbox.writeFile(`${dir}/token.txt`, token, { createParents: true });
  const controller = new AbortController();
  const running = settle(
    sandbox.exec(
      [
        'python3',
        '-m',
        'http.server',
        String(port),
        '--bind',
        '127.0.0.1',
        '--directory',
        dir, // relative to the exec's default cwd, the workspace
      ],
      { timeoutMs: 115_000, maxOutputBytes: 1 << 20, signal: controller.signal },
    ),
  );
  const stop = async () => {
    controller.abort();
    await running;
  };
  return { token, stop, [Symbol.asyncDispose]: stop };
}

/** One HTTP/1.0 GET over `connect(port)`; resolves with the raw response text. */
async function httpGet(sandbox: Sandbox, port: number, path: string): Promise<string> {
  const stream = await sandbox.connect(port);
  stream.write(`GET ${path} HTTP/1.0\r\nHost: localhost\r\n\r\n`);
  const { data, ended, error } = await readStream(stream, 15_000);
  if (ended === 'error') throw error;
  return data.toString('latin1');
}

/** Listens on a free port in 3000-9999 on every host interface, counting connections. */
async function hostListener(
  token: string,
): Promise<{ server: Server; port: number; accepted: () => number }> {
  let accepted = 0;
  for (let attempt = 0; attempt < 50; attempt++) {
    const server = createServer((socket) => {
      accepted++;
      socket.end(token);
    });
    const port = 3000 + Math.floor(Math.random() * 7000);
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '0.0.0.0', () => resolve(true));
    });
    if (ok) return { server, port, accepted: () => accepted };
  }
  throw new Error('no free host port in 3000-9999');
}

/** `connect(port)`: previews reach the sandbox's own loopback and nothing else. */
export function connectCases(h: ConformanceHarness): void {
  describe('connect', () => {
    h.case('connect.http', 'connect(port) reaches a server listening inside the sandbox', async () => {
      const sandbox = await h.shared();
      if (!h.backend.capabilities().connect) {
        await expectIsolationError(sandbox.connect(8080), ['UNSUPPORTED'], 'connect without the capability');
        return;
      }
      await using server = await startHttpServer(sandbox, 8080);
      const response = await waitFor('the server to answer', async () => {
        const r = await settle(httpGet(sandbox, 8080, '/token.txt'));
        return r.ok && r.value.includes(server.token) ? r.value : undefined;
      });
      expect(response).toMatch(/^HTTP\/1\.[01] 200/);
      expect(response).toContain(server.token);
    });

    h.case('connect.closed-port', 'connect() to a closed port errors instead of hanging', async () => {
      const sandbox = await h.shared();
      if (!h.backend.capabilities().connect) return;
      const attempt = await settle(sandbox.connect(8099));
      if (!attempt.ok) {
        expect(isIsolationError(attempt.error), describeError(attempt.error)).toBe(true);
        return;
      }
      attempt.value.write('GET / HTTP/1.0\r\n\r\n');
      const { data, ended } = await readStream(attempt.value, 20_000);
      expect(ended, 'the stream must end or error, not hang').not.toBe('timeout');
      expect(data.byteLength).toBe(0);
    });

    h.case('connect.invalid-port', 'connect() refuses ports outside 1-65535', async () => {
      const sandbox = await h.shared();
      for (const port of [0, -1, 65536, 1.5, Number.NaN]) {
        await expectIsolationError(
          sandbox.connect(port),
          ['INVALID_INPUT', ...(h.backend.capabilities().connect ? [] : (['UNSUPPORTED'] as const))],
          `connect(${port})`,
        );
      }
    });

    h.case(
      'connect.isolated-per-sandbox',
      "connect(port) of one sandbox never reaches another sandbox's server",
      async () => {
        const sandbox = await h.shared();
        if (!h.backend.capabilities().connect) return;
        await using server = await startHttpServer(sandbox, 8081);
        await waitFor('the server to answer', async () => {
          const r = await settle(httpGet(sandbox, 8081, '/token.txt'));
          return r.ok && r.value.includes(server.token) ? true : undefined;
        });
        await using other = await h.dedicated();
        const attempt = await settle(httpGet(other.sandbox, 8081, '/token.txt'));
        if (attempt.ok) expect(attempt.value).not.toContain(server.token);
      },
    );

    h.case('connect.never-reaches-host', 'connect(port) never reaches a server on the host', async () => {
      const sandbox = await h.shared();
      if (!h.backend.capabilities().connect) return;
      const token = nonce('host-server');
      const host = await hostListener(token);
      try {
        const attempt = await settle(sandbox.connect(host.port));
        if (attempt.ok) {
          const { data } = await readStream(attempt.value, 10_000);
          expect(data.toString('latin1')).not.toContain(token);
        }
        expect(host.accepted(), 'the host listener was reached from the sandbox').toBe(0);
      } finally {
        await new Promise((resolve) => host.server.close(resolve));
      }
    });
  });

  describe('listen', () => {
    h.case(
      'listen.outbound',
      'listen(port): a sandbox program connecting to the port talks to the host, both ways, until it is closed',
      async () => {
        const sandbox = await h.shared();
        if (!h.backend.capabilities().listen) {
          await expectIsolationError(
            sandbox.listen(0, () => {}),
            ['UNSUPPORTED'],
            'listen without the capability',
          );
          return;
        }
        const token = nonce('pong');
        const received: Buffer[] = [];
        const listener = await sandbox.listen(0, (socket) => {
          socket.on('data', (chunk: Buffer) => {
            received.push(chunk);
            socket.end(token);
          });
          socket.on('error', () => undefined);
        });
        expect(listener.port).toBeGreaterThan(0);
        const dial = (port: number) =>
          sandbox.exec(
            [
              'python3',
              '-c',
              `import socket\ns=socket.create_connection(('127.0.0.1',${port}),5)\ns.sendall(b'ping')\nprint(s.recv(100).decode())`,
            ],
            { timeoutMs: 20_000, maxOutputBytes: 1 << 16 },
          );
        const r = await dial(listener.port);
        expect(Buffer.from(r.stdout).toString(), Buffer.from(r.stderr).toString()).toContain(token);
        expect(Buffer.concat(received).toString()).toBe('ping');
        listener.close();
        await listener.ended;
        const after = await dial(listener.port);
        expect(after.exitCode, 'a closed listener still accepted').not.toBe(0);
      },
    );

    h.case('listen.invalid-port', 'listen() refuses ports outside 0-65535', async () => {
      const sandbox = await h.shared();
      for (const port of [-1, 65536, 1.5, Number.NaN]) {
        await expectIsolationError(
          sandbox.listen(port, () => {}),
          ['INVALID_INPUT', ...(h.backend.capabilities().listen ? [] : (['UNSUPPORTED'] as const))],
          `listen(${port})`,
        );
      }
    });
  });
}
