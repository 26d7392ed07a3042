import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createStudioClient, type ExecStreamEvent, type StudioClient, streamExec } from '@studio/client';
import { runtimePaths } from '@studio/isolation/testing';
import { DockerBackend } from '@studio/isolation-docker';
import { afterAll, describe, expect, it } from 'vitest';
import type { StreamedEvent } from './realtime/event-bus.ts';
import { type ApiProcess, whenListening } from './testing/api-process.ts';
import { dockerSkip, ES } from './testing/docker-api.ts';

// The Done-when of issue 17's graceful shutdown, on the real entry point (`npm start`'s main.ts) as a child
// process with the Docker backend: under SIGTERM a 30 s exec finishes and its client gets its result, a
// streaming client is told the server is going away and reconnects to the restarted API by itself, and a second
// SIGTERM exits at once.

const API_DIR = fileURLToPath(new URL('..', import.meta.url));
const TSX = fileURLToPath(new URL('../../../node_modules/.bin/tsx', import.meta.url));
const IMAGE = 'studio-sandbox:latest';
const PASSWORD = 'admin-password-for-shutdown';
const dataDir = mkdtempSync(join(tmpdir(), 'studio-shutdown-'));

type Started = ApiProcess;

async function freePort(): Promise<number> {
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

function start(port: number): Promise<Started> {
  const child = spawn(TSX, ['src/main.ts'], {
    cwd: API_DIR,
    env: {
      ...process.env,
      STUDIO_DATA_DIR: dataDir,
      // The same address every start: the streaming client reconnects to the restarted API there.
      STUDIO_PORT: String(port),
      STUDIO_PREVIEW_PORT: '0',
      STUDIO_BACKENDS: 'docker',
      STUDIO_WARM_POOL: '0',
      STUDIO_WORKSPACE_POOL: '0',
      STUDIO_ADMIN_PASSWORD: PASSWORD,
      STUDIO_JWT_SECRET: 'shutdown-test-secret-0123456789-abcdefghijklmnop',
      STUDIO_DRAIN_SECONDS: '40',
      STUDIO_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return whenListening(child, { timeoutMs: 90_000, ready: /or from TypeScript/ });
}

async function until(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function signIn(url: string): Promise<StudioClient> {
  const res = await fetch(`${url}/trpc/auth.login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: PASSWORD }),
  });
  const { token } = ((await res.json()) as { result: { data: { token: string } } }).result.data;
  return createStudioClient({ url, token, EventSource: ES });
}

/** A streamed exec and everything its client sees. */
function streamed(client: StudioClient, sessionId: string, command: string[]) {
  const events: ExecStreamEvent[] = [];
  const state = { error: undefined as unknown, complete: false };
  const run = streamExec(
    client,
    { sessionId, command, timeoutMs: 60_000 },
    {
      onData: (e) => events.push(e),
      onError: (e) => {
        state.error = e;
      },
      onComplete: () => {
        state.complete = true;
      },
    },
  );
  return { events, state, run };
}

describe.skipIf(dockerSkip !== undefined)(`SIGTERM drains (${dockerSkip ?? 'Docker'})`, () => {
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('a 30 s exec finishes, a stream is told to go away and reconnects to the restarted API, a second SIGTERM exits at once', async () => {
    const port = await freePort();
    const running: Started[] = [];
    const started = async () => {
      const s = await start(port);
      running.push(s);
      return s;
    };
    try {
      const first = await started();
      const client = await signIn(first.url);
      const sid = (await client.sessions.create.mutate({ image: IMAGE })).id;

      // A watcher of the session's events: what it receives, and its connection's states.
      const seen: StreamedEvent[] = [];
      const states: { state: string; error: unknown; at: number }[] = [];
      const watcher = client.events.subscribe.subscribe({ sessionId: sid }, {
        onData: (e: { data: StreamedEvent }) => seen.push(e.data),
        onConnectionStateChange: (s: { state: string; error: unknown }) =>
          states.push({ state: s.state, error: s.error, at: Date.now() }),
      } as never);
      await until(() => states.some((s) => s.state === 'pending'), 'the watcher to connect', 10_000);

      const long = streamed(client, sid, ['sh', '-c', 'sleep 30; echo done']);
      await until(() => long.events.some((e) => e.type === 'started'), 'the exec to start', 20_000);
      const execStarted = Date.now();

      first.child.kill('SIGTERM');
      const sigterm = Date.now();
      // Out of rotation at once, while the exec goes on.
      await until(() => /"msg":"draining"/.test(first.stdout()), 'the drain to start', 5000);
      const ready = await fetch(`${first.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ draining: true });
      // The watcher is told the server is going away (a retryable UNAVAILABLE), and does not give up.
      await until(
        () =>
          states.some(
            (s) => s.at >= sigterm && s.state === 'connecting' && /shutting down/.test(String(s.error)),
          ),
        'the going-away signal',
        5000,
      );

      // The 30 s exec runs to its end and its client gets the result, then the process exits 0 without
      // waiting out the 40 s drain.
      await until(() => long.state.complete || long.state.error !== undefined, 'the exec to end', 45_000);
      expect(long.state.error).toBeUndefined();
      expect(long.events.filter((e) => e.type === 'stdout').map((e) => (e as { data: string }).data)).toEqual(
        ['done\n'],
      );
      expect(long.events.at(-1)).toMatchObject({ type: 'exit', exitCode: 0, timedOut: false });
      expect(Date.now() - execStarted).toBeGreaterThanOrEqual(29_000);
      const code = await first.exited;
      expect(code).toBe(0);
      expect(Date.now() - sigterm).toBeLessThan(38_000);

      // The same watcher, untouched by the test, reconnects to the restarted API and hears new events there.
      const second = await started();
      const restarted = Date.now();
      await until(
        () => states.some((s) => s.at >= restarted && s.state === 'pending'),
        'the watcher to reconnect',
        15_000,
      );
      const client2 = await signIn(second.url);
      await client2.exec.run.mutate({ sessionId: sid, command: ['echo', 'after-restart'] });
      await until(
        () => seen.some((e) => e.type === 'exec.started' && e.command.includes('after-restart')),
        'an event from the restarted API',
        10_000,
      );
      watcher.unsubscribe();

      // A second SIGTERM while the drain waits for running work: exits at once, saying so.
      const held = streamed(client2, sid, ['sleep', '30']);
      await until(() => held.events.some((e) => e.type === 'started'), 'the second exec to start', 20_000);
      second.child.kill('SIGTERM');
      await until(() => /"msg":"draining"/.test(second.stdout()), 'the second drain to start', 5000);
      const again = Date.now();
      second.child.kill('SIGTERM');
      const code2 = await second.exited;
      expect(Date.now() - again).toBeLessThan(2000);
      expect(code2).not.toBe(0);
      expect(second.stdout()).toMatch(/"msg":"second signal: exiting now/);
    } finally {
      for (const s of running) if (s.child.exitCode === null) s.child.kill('SIGKILL');
      // Leave nothing behind: this data dir's sandboxes (container, workspace mount) go with the backend itself,
      // which is quicker than one more start of the API.
      const instanceId = existsSync(join(dataDir, 'instance-id'))
        ? readFileSync(join(dataDir, 'instance-id'), 'utf8').trim()
        : undefined;
      const backend =
        instanceId === undefined
          ? undefined
          : new DockerBackend({
              dataDir: join(dataDir, 'docker'),
              instanceId,
              seccompProfile: runtimePaths().seccompProfile,
            });
      for (const sandbox of (await backend?.list({ labels: { 'studio.instance': instanceId as string } })) ??
        []) {
        await backend?.destroy(sandbox.id);
      }
      await backend?.close();
    }
  }, 180_000);
});
