import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStudioClient, type StudioClient, StudioClientError } from '@studio/client';
import { runtimePaths } from '@studio/isolation/testing';
import { DockerBackend } from '@studio/isolation-docker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StreamedEvent } from '../realtime/event-bus.ts';
import { ADMIN_PASSWORD, skipUnlessAvailable, startTestApi, type TestApi } from '../testing/api-fixture.ts';

const METRICS_TOKEN = 'metrics-token-for-tests-0123456789abcdef';

import { ES } from '../testing/docker-api.ts';

// Issue 17, disk as a shared resource, against the real API and DockerBackend on a host disk of its own: a
// 320 MiB ext4 image loop-mounted as the backend's data directory. One session fills its workspace; the other
// stays writable with its data intact, the filler gets a clear error, the host keeps its headroom, and a create
// that would overcommit the disk is refused with HOST_DISK_FULL. Then the failure preallocation prevents is
// forced from outside (a workspace image made sparse again, the host disk filled by the host itself) to prove
// a read-only workspace is reported. Every mount and loop device made here is removed, even on failure.

const MiB = 1024 * 1024;
const IMAGE = 'studio-sandbox:latest';
const INSTANCE = 'api-test-host-disk';
const HEADROOM = 16 * MiB;
const root = mkdtempSync(join(tmpdir(), 'studio-host-disk-'));
const hostImage = join(root, 'host.img');
const hostDir = join(root, 'host');
const dataDir = join(hostDir, 'docker');
const workspacesDir = join(dataDir, 'workspaces');
const labels = { 'studio.test': 'host-disk' };

const backend = new DockerBackend({
  dataDir,
  instanceId: INSTANCE,
  seccompProfile: runtimePaths().seccompProfile,
  workspaceMode: 'loop',
  workspaceHeadroomBytes: HEADROOM,
});
const skip = process.getuid?.() !== 0 ? 'needs root to mount' : await skipUnlessAvailable(backend);

const sh = (...args: string[]) => execFileSync(args[0] as string, args.slice(1), { stdio: 'pipe' });

/** Unmounts everything under `root`, deepest first (lazily: a busy mount must not keep the test from ending). */
function unmountAll(): void {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === root || m.startsWith(`${root}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    try {
      sh('umount', '-l', m);
    } catch {}
  }
  // mount -o loop sets autoclear, but a lazy unmount may leave the device: detach what still backs onto ours.
  for (const line of sh('losetup', '-j', hostImage).toString().split('\n')) {
    const dev = line.split(':')[0];
    if (dev) {
      try {
        sh('losetup', '-d', dev);
      } catch {}
    }
  }
}

async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

async function sandboxOf(sessionId: string): Promise<string> {
  const [info] = await backend.list({ labels: { 'studio.session': sessionId } });
  if (!info) throw new Error(`no sandbox for ${sessionId}`);
  return info.id;
}

async function refusal(p: Promise<unknown>): Promise<StudioClientError> {
  const e = await p.then(
    () => new Error('expected a refusal'),
    (error: unknown) => error,
  );
  expect(e).toBeInstanceOf(StudioClientError);
  return e as StudioClientError;
}

describe.skipIf(skip !== undefined)(
  `the host disk as a shared resource${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let t: TestApi;
    let alice: StudioClient;
    let bob: StudioClient;
    let keeper = ''; // alice's: must stay writable
    let filler = ''; // bob's: fills its workspace

    beforeAll(async () => {
      sh('truncate', '-s', String(320 * MiB), hostImage);
      sh('mkfs.ext4', '-q', '-F', '-m', '0', hostImage);
      mkdirSync(hostDir);
      sh('mount', '-o', 'loop', hostImage, hostDir);
      t = await startTestApi({
        backends: [backend],
        labels,
        env: { STUDIO_INSTANCE_ID: INSTANCE, STUDIO_METRICS_TOKEN: METRICS_TOKEN },
      });
      const admin = createStudioClient({
        url: t.url,
        token: await t.login('admin', ADMIN_PASSWORD),
      });
      for (const name of ['alice', 'bob'])
        await admin.users.create.mutate({ username: name, password: `${name}-password-1` });
      const signIn = async (name: string) =>
        createStudioClient({
          url: t.url,
          token: await t.login(name, `${name}-password-1`),
          EventSource: ES,
        });
      alice = await signIn('alice');
      bob = await signIn('bob');
    }, 120_000);

    afterAll(async () => {
      try {
        await t?.close();
        for (const s of await backend.list({ labels })) await backend.destroy(s.id).catch(() => undefined);
        await backend.close();
      } finally {
        unmountAll();
        rmSync(root, { recursive: true, force: true });
      }
    }, 120_000);

    it('gives each workspace its blocks up front and refuses a create that would eat the headroom', async () => {
      const before = await freeBytes(hostDir);
      keeper = (
        await alice.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 256, diskMb: 64 } })
      ).id;
      filler = (await bob.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 256, diskMb: 128 } }))
        .id;
      // Preallocated: the host paid for both quotas at create, not as they fill.
      expect(before - (await freeBytes(hostDir))).toBeGreaterThanOrEqual(192 * MiB);

      const free = await freeBytes(hostDir);
      expect(free - HEADROOM).toBeLessThan(128 * MiB); // so the next 128 MiB create must not fit
      const images = readdirSync(workspacesDir).sort();
      const refused = await refusal(
        alice.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 256, diskMb: 128 } }),
      );
      expect(refused.code).toBe('HOST_DISK_FULL');
      expect(refused.message).toMatch(/no room for a 128 MiB workspace/);
      expect(refused.message).toMatch(/free space .* or lower the workspace quota/);
      expect(refused.message).not.toContain(root); // no host path to the user
      // Refused before anything was written: no image left behind, the host's free space unchanged.
      expect(readdirSync(workspacesDir).sort()).toEqual(images);
      expect(await freeBytes(hostDir)).toBe(free);
      const [failed] = (await alice.sessions.list.query({ includeEnded: true })).filter(
        (s) => s.state === 'failed',
      );
      expect(failed?.failureReason).toMatch(/^HOST_DISK_FULL: /);
    }, 120_000);

    it('a session filling its workspace gets a clear error; the other stays writable and nothing is lost', async () => {
      await alice.files.write.mutate({ sessionId: keeper, path: 'keep.txt', content: 'alice data' });
      await bob.files.write.mutate({ sessionId: filler, path: 'before.txt', content: 'bob data' });

      const fill = await bob.exec.run.mutate({
        sessionId: filler,
        command: ['dd', 'if=/dev/zero', 'of=/workspace/fill', 'bs=1M'],
        timeoutMs: 60_000,
      });
      expect(fill.exitCode).not.toBe(0);
      expect(fill.stderr).toMatch(/No space left on device/);
      const more = await refusal(
        bob.files.write.mutate({ sessionId: filler, path: 'more.txt', content: 'x'.repeat(MiB) }),
      );
      expect(more.code).toBe('RESOURCE_LIMIT');
      expect(more.message).toMatch(/no space left in the workspace \(disk quota\)/);
      // The host disk never filled: the quota was the filler's own preallocated blocks.
      expect(await freeBytes(hostDir)).toBeGreaterThanOrEqual(HEADROOM);

      // The neighbour writes (through the API and from a process, synced to its disk) and reads its data back.
      await alice.files.write.mutate({ sessionId: keeper, path: 'new.txt', content: 'y'.repeat(MiB) });
      const write = await alice.exec.run.mutate({
        sessionId: keeper,
        command: ['sh', '-c', 'dd if=/dev/urandom of=/workspace/a.bin bs=1M count=4 && sync && echo ok'],
      });
      expect(write).toMatchObject({ stdout: 'ok\n', exitCode: 0 }); // 64 MiB with the policy's 200k inodes leaves ~8 MiB of data
      expect((await alice.files.read.query({ sessionId: keeper, path: 'keep.txt' })).content).toBe(
        'alice data',
      );
      expect(await backend.workspaces.readOnlyIds()).toEqual(new Set());
      const report = await t.app.deps.sessions.reconcile();
      expect(report.failed).toEqual([]);
      expect((await alice.sessions.get.query({ sessionId: keeper })).state).toBe('running');
      expect((await bob.sessions.get.query({ sessionId: filler })).state).toBe('running');

      // The filler lost nothing either, and writes again once it frees space.
      expect((await bob.files.read.query({ sessionId: filler, path: 'before.txt' })).content).toBe(
        'bob data',
      );
      await bob.exec.run.mutate({ sessionId: filler, command: ['rm', '/workspace/fill'] });
      await bob.files.write.mutate({ sessionId: filler, path: 'after.txt', content: 'bob again' });
      expect((await bob.files.read.query({ sessionId: filler, path: 'after.txt' })).content).toBe(
        'bob again',
      );
    }, 180_000);

    it('a workspace that goes read-only anyway is reported on the session, as an event, in /readyz and the metrics', async () => {
      const victim = (
        await alice.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 256, diskMb: 64 } })
      ).id;
      const sandboxId = await sandboxOf(victim);
      const seen: StreamedEvent[] = [];
      const sub = alice.events.subscribe.subscribe(
        { sessionId: victim },
        { onData: (e) => seen.push(e.data as StreamedEvent) },
      );
      const hog = join(hostDir, 'hog');
      try {
        // A host fstrim punches holes in a workspace image through its loop device; the backend fills them again
        // on its next list, which reconciliation polls.
        const allocated = (id: string) => statSync(join(workspacesDir, `${id}.img`)).blocks * 512;
        const keeperSandbox = await sandboxOf(keeper);
        sh('fstrim', join(workspacesDir, keeperSandbox));
        expect(allocated(keeperSandbox)).toBeLessThan(60 * MiB);
        await backend.list({ labels });
        expect(allocated(keeperSandbox)).toBeGreaterThanOrEqual(64 * MiB);

        // What preallocation prevents, forced from outside: the victim's image trimmed, then, before the next
        // list, the host disk filled by something other than a session.
        sh('fstrim', join(workspacesDir, sandboxId));
        expect(allocated(sandboxId)).toBeLessThan(60 * MiB);
        try {
          sh('dd', 'if=/dev/zero', `of=${hog}`, 'bs=1M');
        } catch {} // ENOSPC is the point
        expect(await freeBytes(hostDir)).toBeLessThan(MiB);
        await alice.exec.run.mutate({
          sessionId: victim,
          command: [
            'sh',
            '-c',
            'for i in $(seq 1 400); do mkdir -p /workspace/d$i/x && echo x > /workspace/d$i/x/y || break; done; sync',
          ],
          timeoutMs: 60_000,
        });
        const until = Date.now() + 30_000;
        while (!(await backend.workspaces.readOnlyIds()).has(sandboxId)) {
          if (Date.now() > until) throw new Error('the sparse workspace never went read-only');
          await alice.exec.run
            .mutate({ sessionId: victim, command: ['sh', '-c', 'mkdir -p /workspace/more; sync'] })
            .catch(() => undefined);
          await new Promise((r) => setTimeout(r, 500));
        }

        const report = await t.app.deps.sessions.reconcile();
        expect(report.failed).toEqual([victim]);
        const session = await alice.sessions.get.query({ sessionId: victim });
        expect(session.state).toBe('failed');
        expect(session.failureReason).toMatch(/workspace filesystem went read-only/);
        const until2 = Date.now() + 5_000;
        while (
          !seen.some((e) => e.type === 'session.status' && e.state === 'failed') &&
          Date.now() < until2
        ) {
          await new Promise((r) => setTimeout(r, 50));
        }
        expect(seen).toContainEqual(
          expect.objectContaining({ type: 'session.status', state: 'failed', reason: session.failureReason }),
        );
        const ready = await fetch(`${t.url}/readyz`);
        expect(ready.status).toBe(200); // degraded, not down: the other sessions still work
        expect(await ready.json()).toMatchObject({ ok: true, degraded: true, readOnlyWorkspaces: 1 });
        expect(
          await (
            await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })
          ).text(),
        ).toMatch(/^studio_workspaces_read_only 1$/m);

        // With the host disk at zero, the preallocated neighbours still write.
        const write = await alice.exec.run.mutate({
          sessionId: keeper,
          command: ['sh', '-c', 'dd if=/dev/urandom of=/workspace/b.bin bs=1M count=2 && sync && echo ok'],
        });
        expect(write.stdout).toBe('ok\n');
        expect(await backend.workspaces.readOnlyIds()).toEqual(new Set([sandboxId]));
        expect((await alice.files.read.query({ sessionId: keeper, path: 'keep.txt' })).content).toBe(
          'alice data',
        );
      } finally {
        sub.unsubscribe();
        rmSync(hog, { force: true });
      }
      await alice.sessions.destroy.mutate({ sessionId: victim });
      await t.app.deps.sessions.reconcile();
      expect(await (await fetch(`${t.url}/readyz`)).json()).toMatchObject({
        degraded: false,
        readOnlyWorkspaces: 0,
      });
    }, 180_000);
  },
);
