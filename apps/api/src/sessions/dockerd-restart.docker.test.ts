import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  createStudioClient,
  type EventSourceConstructor,
  type StudioClient,
  streamExec,
} from '@studio/client';
import { runtimePaths } from '@studio/isolation/testing';
import { DockerBackend } from '@studio/isolation-docker';
import Docker from 'dockerode';
import { EventSource } from 'eventsource';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, startTestApi, TEST_DATA_DIR, type TestApi } from '../testing/api-fixture.ts';

// `dockerd` restarted under a live session. The daemon here is a private one (its own socket, data root and
// exec root, no bridge or iptables: sandboxes have no network), so restarting it cannot disturb the tests that
// share the machine's daemon. The image is imported into it from the cached rootfs.tar by the image build.

const REPO = fileURLToPath(new URL('../../../../', import.meta.url));
const ROOT = join(TEST_DATA_DIR, 'dockerd-restart');
// Sockets live in a short folder of their own: a unix socket path may not exceed 108 bytes (containerd
// refuses over 104), and the clone may sit in a deep folder. The data root can stay in the clone.
const RUN = mkdtempSync('/tmp/studio-dockerd-');
const SOCKET = join(RUN, 'docker.sock');
const PIDFILE = join(RUN, 'docker.pid');
const IMAGE = 'studio-sandbox:latest';
const inCi = process.env.CI === 'true' || process.env.CI === '1';

function why(): string | undefined {
  const dockerd = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find((p) => existsSync(p));
  if (!dockerd) return 'dockerd is not installed (apt-get install docker.io)';
  if (process.getuid?.() !== 0) return 'starting a private dockerd needs root';
  try {
    execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], {
      stdio: 'ignore',
      timeout: 10_000,
    });
  } catch {
    return 'the Docker daemon does not answer (the image is built through it first)';
  }
  return undefined;
}
const skip = why();
if (skip && inCi) throw new Error(`a private dockerd is required in CI: ${skip}`);

let daemon: ChildProcess | undefined;

async function startDaemon(): Promise<void> {
  mkdirSync(ROOT, { recursive: true });
  const log = openSync(join(ROOT, 'dockerd.log'), 'a');
  daemon = spawn(
    'dockerd',
    [
      '--data-root',
      join(ROOT, 'data'),
      '--exec-root',
      join(RUN, 'exec'),
      '--pidfile',
      PIDFILE,
      '--host',
      `unix://${SOCKET}`,
      '--bridge=none',
      '--iptables=false',
      '--ip6tables=false',
    ],
    { stdio: ['ignore', log, log], env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } },
  );
  const docker = new Docker({ socketPath: SOCKET });
  for (let i = 0; i < 150; i++) {
    if (
      await docker.ping().then(
        () => true,
        () => false,
      )
    )
      return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the private dockerd did not answer within 30 s (log: ${join(ROOT, 'dockerd.log')})`);
}

async function stopDaemon(): Promise<void> {
  const child = daemon;
  daemon = undefined;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  await exited;
  clearTimeout(timer);
}

async function until<T>(
  read: () => Promise<T>,
  ok: (v: T) => boolean,
  what: string,
  ms = 60_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe.skipIf(skip !== undefined)(
  `dockerd restarted under a live session${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let t: TestApi;
    let backend: DockerBackend;
    let client: StudioClient;

    beforeAll(async () => {
      await startDaemon();
      // Imports the cached image into the private daemon (seconds; it builds nothing that is cached).
      execFileSync('bash', [join(REPO, 'infra/image/build.sh')], {
        env: { ...process.env, DOCKER_HOST: `unix://${SOCKET}` },
        stdio: ['ignore', 'ignore', 'inherit'],
        timeout: 600_000,
      });
      backend = new DockerBackend({
        docker: new Docker({ socketPath: SOCKET }),
        dataDir: join(ROOT, 'workspaces'),
        instanceId: 'api-dockerd-restart',
        seccompProfile: runtimePaths().seccompProfile,
      });
      t = await startTestApi({ backends: [backend], env: { STUDIO_INSTANCE_ID: 'api-dockerd-restart' } });
      t.app.deps.sessions.startReconciler(500);
      client = createStudioClient({
        url: t.url,
        token: await t.login('admin', ADMIN_PASSWORD),
        EventSource: EventSource as unknown as EventSourceConstructor,
      });
    });

    afterAll(async () => {
      await t?.close();
      if (daemon) {
        const docker = new Docker({ socketPath: SOCKET });
        for (const c of await docker.listContainers({ all: true }).catch(() => [])) {
          await docker
            .getContainer(c.Id)
            .remove({ force: true })
            .catch(() => undefined);
        }
      }
      await backend?.close().catch(() => undefined);
      await stopDaemon();
      // Workspaces were unmounted by destroy; the daemon's own state goes with its root.
      try {
        execFileSync('sh', ['-c', `grep -q ' ${ROOT}/' /proc/mounts || rm -rf '${ROOT}'`]);
      } catch {
        // a mount is left under ROOT: keep it for a look, and remove only what is safe
      }
      execFileSync('rm', ['-rf', '--one-file-system', RUN]);
    });

    it('a running session is seen stopped, keeps its workspace and starts again; work in flight ends with an error, not a hang', async () => {
      const session = await client.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 256 } });
      await client.files.write.mutate({
        sessionId: session.id,
        path: 'notes.txt',
        content: 'kept across the restart\n',
      });
      expect(
        (await client.exec.run.mutate({ sessionId: session.id, command: ['cat', 'notes.txt'] })).stdout,
      ).toBe('kept across the restart\n');
      // A long exec in flight when the daemon goes away.
      const ended = new Promise<string>((resolve) => {
        streamExec(
          client,
          { sessionId: session.id, command: ['sleep', '600'], timeoutMs: 600_000 },
          {
            onData: (e) => {
              if (e.type === 'exit') resolve(`exit ${e.exitCode ?? e.signal}`);
            },
            onError: (e) => resolve(`error ${(e as Error).message}`),
            onComplete: () => resolve('complete'),
          },
          // The client retries a transient failure (the runtime unavailable) for 30 s by default, as long as this
          // test waits: the server's answer is what is under test, so give up on it sooner.
          { retryForMs: 5_000 },
        );
      });
      await new Promise((r) => setTimeout(r, 500));

      await stopDaemon();
      // While it is down: a clear refusal, not a hang.
      const down = await client.exec.run.mutate({ sessionId: session.id, command: ['true'] }).then(
        () => 'ran',
        (e: { code: string }) => e.code,
      );
      expect(down).not.toBe('ran');
      const outcome = await Promise.race([ended, new Promise((r) => setTimeout(() => r('hung'), 30_000))]);
      console.log(`[dockerd-restart] the exec in flight: ${String(outcome)}`);
      expect(outcome).not.toBe('hung');

      await startDaemon();
      // Docker stops containers without a restart policy when it shuts down: reconciliation sees that.
      const seen = await until(
        () => client.sessions.get.query({ sessionId: session.id }),
        (s) => s.state !== 'running',
        'reconciliation to notice the restart',
      );
      expect(seen.state).toBe('stopped');

      const started = await client.sessions.start.mutate({ sessionId: session.id });
      expect(started.state).toBe('running');
      const read = await client.files.read.query({ sessionId: session.id, path: 'notes.txt' });
      expect(read.content).toBe('kept across the restart\n');
      expect(
        (await client.exec.run.mutate({ sessionId: session.id, command: ['cat', 'notes.txt'] })).stdout,
      ).toBe('kept across the restart\n');
      await client.sessions.destroy.mutate({ sessionId: session.id });
      expect(await backend.list({ labels: { 'studio.instance': 'api-dockerd-restart' } })).toEqual([]);
    });
  },
);
