import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createStudioClient, loginStudioClient } from '@studio/client';
import { runtimePaths } from '@studio/isolation/testing';
import { DockerBackend } from '@studio/isolation-docker';
import { afterAll, describe, expect, it } from 'vitest';
import { skipUnlessAvailable } from '../testing/api-fixture.ts';
import { type ApiProcess, whenListening } from '../testing/api-process.ts';

// Recovery (SECURITY.md §7) with the real API as a child process and the real DockerBackend: the API is
// SIGKILLed mid-session and restarted; start-up reconciliation adopts the session (workspace intact), removes
// an orphan of this instance, and the periodic pass marks a session whose container was removed behind the
// API's back `failed`. (A dockerd restart is not exercised here — it would disturb the shared host; the
// detection logic is unit-tested with a fake backend in session-manager.test.ts.)

const API_DIR = fileURLToPath(new URL('../..', import.meta.url));
const INSTANCE = 'api-test-recovery';
const PASSWORD = 'recovery-admin-password';
const IMAGE = 'studio-sandbox:latest';
const dataDir = mkdtempSync(join(tmpdir(), 'studio-recovery-'));
const backend = new DockerBackend({
  dataDir: join(dataDir, 'docker'),
  instanceId: INSTANCE,
  seccompProfile: runtimePaths().seccompProfile,
});
const skip = await skipUnlessAvailable(backend);

function start(): Promise<ApiProcess> {
  // node itself with tsx's loader (not the tsx CLI, whose SIGKILL would leave the real API running as an orphan).
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: API_DIR,
    env: {
      ...process.env,
      STUDIO_DATA_DIR: dataDir,
      STUDIO_PORT: '0',
      STUDIO_PREVIEW_PORT: '0',
      STUDIO_BACKENDS: 'docker',
      STUDIO_WARM_POOL: '0',
      STUDIO_INSTANCE_ID: INSTANCE,
      STUDIO_ADMIN_PASSWORD: PASSWORD,
      STUDIO_ORPHAN_GRACE_MS: '0',
      STUDIO_RECONCILE_INTERVAL_MS: '1000',
      STUDIO_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return whenListening(child, { timeoutMs: 60_000 });
}

function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

describe.skipIf(skip !== undefined)(`recovery${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const children: ChildProcess[] = [];

  afterAll(async () => {
    for (const c of children) await kill(c, 'SIGKILL');
    for (const s of await backend.list({ labels: { 'studio.instance': INSTANCE } }))
      await backend.destroy(s.id).catch(() => undefined);
    await backend.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('SIGKILL and restart: adopted with its workspace, orphans removed, a vanished sandbox fails the session', async () => {
    const first = await start();
    children.push(first.child);
    const { client, token } = await loginStudioClient({
      url: first.url,
      username: 'admin',
      password: PASSWORD,
    });
    const session = await client.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 256 } });
    await client.files.write.mutate({ sessionId: session.id, path: 'notes.txt', content: 'kept\n' });
    await kill(first.child, 'SIGKILL');

    // A sandbox of this instance the store never heard of (as if the API died mid-create), made through a
    // backend closed right after, so this process holds no connection to it when the API removes it.
    const maker = new DockerBackend({
      dataDir: join(dataDir, 'docker'),
      instanceId: INSTANCE,
      seccompProfile: runtimePaths().seccompProfile,
    });
    const orphan = await maker.create({
      image: IMAGE,
      resources: {
        memoryBytes: 128 * 2 ** 20,
        cpus: 0.5,
        pids: 64,
        diskBytes: 64 * 2 ** 20,
        inodes: 4096,
        tmpBytes: 16 * 2 ** 20,
      },
      network: 'none',
      labels: { 'studio.session': 'ses_orphan' },
    });
    await maker.close();

    const second = await start();
    children.push(second.child);
    const again = createStudioClient({ url: second.url, token });
    expect((await again.sessions.get.query({ sessionId: session.id })).state).toBe('running');
    const read = await again.files.read.query({ sessionId: session.id, path: 'notes.txt' });
    expect(read.content).toBe('kept\n');
    const run = await again.exec.run.mutate({ sessionId: session.id, command: ['cat', 'notes.txt'] });
    expect(run.stdout).toBe('kept\n');
    const left = await backend.list({ labels: { 'studio.instance': INSTANCE } });
    expect(left.map((s) => s.id)).not.toContain(orphan.id);
    expect(left.map((s) => s.labels['studio.session'])).toEqual([session.id]);

    // Removed behind the API's back: the periodic reconciliation (1 s here) fails the session with a reason.
    execFileSync('docker', [
      'rm',
      '-f',
      ...execFileSync('docker', ['ps', '-aq', '--filter', `label=studio.session=${session.id}`], {
        encoding: 'utf8',
      })
        .trim()
        .split('\n'),
    ]);
    let state = '';
    let reason: string | null = null;
    for (let i = 0; i < 100 && state !== 'failed'; i++) {
      await new Promise((r) => setTimeout(r, 200));
      const s = await again.sessions.get.query({ sessionId: session.id });
      state = s.state;
      reason = s.failureReason;
    }
    expect(state).toBe('failed');
    expect(reason).toMatch(/vanished/);
    expect((await again.sessions.destroy.mutate({ sessionId: session.id })).state).toBe('destroyed');
    await kill(second.child, 'SIGTERM');
  }, 180_000);
});
