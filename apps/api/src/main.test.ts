import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { type ApiProcess, whenListening } from './testing/api-process.ts';

// `npm start`'s entry point as a real process: first start, printed login, persistence, SIGTERM.

const API_DIR = fileURLToPath(new URL('..', import.meta.url));
const TSX = fileURLToPath(new URL('../../../node_modules/.bin/tsx', import.meta.url));
const dataDir = mkdtempSync(join(tmpdir(), 'studio-main-'));

type Started = ApiProcess;

function start(): Promise<Started> {
  const child = spawn(TSX, ['src/main.ts'], {
    cwd: API_DIR,
    env: {
      ...process.env,
      STUDIO_DATA_DIR: dataDir,
      STUDIO_PORT: '0',
      STUDIO_PREVIEW_PORT: '0',
      STUDIO_BACKENDS: 'docker',
      STUDIO_WARM_POOL: '0',
      STUDIO_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Listening, and its one-time login printed ("… or from TypeScript").
  return whenListening(child, { timeoutMs: 60_000, ready: /or from TypeScript/ });
}

function stop(s: Started): Promise<number | null> {
  return new Promise((resolve) => {
    s.child.once('exit', (code) => resolve(code));
    s.child.kill('SIGTERM');
  });
}

async function login(url: string, password: string): Promise<Response> {
  return fetch(`${url}/trpc/auth.login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password }),
  });
}

describe('main.ts', () => {
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('first start prints a one-time admin password once; logins survive a restart; SIGTERM exits 0', async () => {
    const first = await start();
    const password = /one-time password: (\S+)/.exec(first.stderr())?.[1];
    expect(password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect((await fetch(`${first.url}/healthz`)).status).toBe(200);
    const res = await login(first.url, password as string);
    expect(res.status).toBe(200);
    const { token } = ((await res.json()) as { result: { data: { token: string } } }).result.data;
    expect(statSync(join(dataDir, 'jwt-secret')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, 'pglite')).isDirectory()).toBe(true);
    expect(await stop(first)).toBe(0);
    // Structured logs: JSON lines, never the password or the token.
    const lines = first.stdout().trim().split('\n');
    expect(lines.every((l) => JSON.parse(l).level !== undefined)).toBe(true);
    expect(first.stdout()).not.toContain(password);
    expect(first.stdout()).not.toContain(token);
    expect(first.stdout()).toContain('"msg":"shutting down"');

    const second = await start();
    try {
      expect(second.stderr()).not.toContain('one-time password');
      const me = await fetch(`${second.url}/trpc/auth.me`, { headers: { authorization: `Bearer ${token}` } });
      expect(me.status).toBe(200);

      // A third on the same data dir while the second runs: refused with the holder and the fix, no stack.
      const refused = await start().then(
        async (third) => {
          await stop(third);
          return 'started';
        },
        (error: Error) => error.message,
      );
      expect(refused).toMatch(/^the API exited \(1\) during start-up:/);
      expect(refused).toMatch(/the data directory \S+ is in use by process \d+ on /);
      expect(refused).toContain('STUDIO_DATA_DIR');
      expect(refused).toContain('(code INVALID_STATE)');
      expect(refused).not.toMatch(/\n\s+at /);
    } finally {
      expect(await stop(second)).toBe(0);
    }
    // The data dir keeps the instance id the first start derived.
    expect(readFileSync(join(dataDir, 'instance-id'), 'utf8')).toMatch(/^api-[0-9a-f]{16}\n$/);
  }, 120_000);

  it('starting with the store down exits 1 with one line naming the fix, no stack trace', async () => {
    // A port that was free a moment ago: nothing listens there, so PostgreSQL's connection is refused.
    const probe = createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const { port } = probe.address() as { port: number };
    await new Promise((resolve) => probe.close(resolve));
    const down = mkdtempSync(join(tmpdir(), 'studio-main-down-'));
    try {
      const child = spawn(TSX, ['src/main.ts'], {
        cwd: API_DIR,
        env: {
          ...process.env,
          DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/studio`,
          STUDIO_DATA_DIR: down,
          STUDIO_PORT: '0',
          STUDIO_PREVIEW_PORT: '0',
          STUDIO_BACKENDS: 'docker',
          STUDIO_WARM_POOL: '0',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let err = '';
      child.stderr?.on('data', (c: Buffer) => {
        err += c.toString();
      });
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code).toBe(1);
      const lines = err.trimEnd().split('\n');
      expect(lines, err).toHaveLength(1);
      expect(lines[0]).toMatch(
        new RegExp(
          `^Claude Studio API did not start: cannot connect to PostgreSQL at 127\\.0\\.0\\.1:${port}/studio: .*ECONNREFUSED.*; check that the server runs and the database URL is right \\(code UNAVAILABLE\\)$`,
        ),
      );
      expect(err).not.toMatch(/\n\s+at /);
    } finally {
      rmSync(down, { recursive: true, force: true });
    }
  }, 60_000);
});
