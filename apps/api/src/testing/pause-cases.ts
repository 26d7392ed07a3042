import { openTerminal, type StudioClient } from '@studio/client';
import { expect, it } from 'vitest';
import WebSocket from 'ws';
import type { TestApi } from './api-fixture.ts';
import { codeOf } from './api-fixture.ts';
import { loopbackFetch } from './loopback-fetch.ts';

// Issue 20's "done when", run against the real API on one backend (pause.docker.test.ts, pause.gvisor.test.ts):
// pause and resume, automatic pause and transparent resume through each kind of use, fork, snapshots, and a
// restore that fails. What only a backend that saves memory can show is asserted where `memory` is true.

/** What the cases need from a test file. */
export interface PauseCaseContext {
  api: TestApi;
  client: StudioClient;
  /** The client's login token (for the terminal socket). */
  token: string;
  /** Whether the backend saves memory (its `checkpoint` capability). */
  memory: boolean;
  /** Bytes of the host's memory the sandbox holds now (its processes' resident memory). */
  hostMemoryBytes(sandboxId: string): Promise<number>;
  /** Damages the saved memory of a paused session's sandbox (backends that save memory). */
  damageSavedState?(sandboxId: string): Promise<void>;
}

const COUNTER =
  "setsid sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done' >/dev/null 2>&1 </dev/null &";

/** The cases, in order. */
export function pauseCases(get: () => PauseCaseContext): void {
  const sh = async (sessionId: string, line: string) => {
    const r = await get().client.exec.run.mutate({
      sessionId,
      command: ['/bin/sh', '-c', line],
      timeoutMs: 30_000,
    });
    return r.stdout.trim();
  };
  const count = async (sessionId: string) =>
    Number(await sh(sessionId, 'cat /tmp/count 2>/dev/null || echo 0'));
  const state = async (sessionId: string) => (await get().client.sessions.get.query({ sessionId })).state;
  const sandboxOf = async (sessionId: string) => {
    const record = await get().api.app.deps.store.getSessionById(sessionId);
    if (!record?.sandboxId) throw new Error(`session ${sessionId} has no sandbox`);
    return record.sandboxId;
  };
  /** Pauses the session the way an idle sweep does: as if nothing had used it for 11 minutes. */
  const idlePause = async (sessionId: string) => {
    await get().api.app.deps.sessions.sweep(new Date(Date.now() + 11 * 60_000));
    expect(await state(sessionId)).toBe('paused');
  };
  const destroyAll = async (...ids: string[]) => {
    for (const sessionId of ids)
      await get()
        .client.sessions.destroy.mutate({ sessionId })
        .catch(() => undefined);
  };

  it('pause releases the sandbox (none of the host memory held) and resume carries on from memory', {
    timeout: 180_000,
  }, async () => {
    const { client, memory, hostMemoryBytes } = get();
    const { id } = await client.sessions.create.mutate({});
    try {
      await client.files.write.mutate({ sessionId: id, path: 'kept.txt', content: 'kept' });
      await sh(id, COUNTER);
      await expect.poll(() => count(id), { timeout: 10_000 }).toBeGreaterThan(3);
      const sandboxId = await sandboxOf(id);
      expect(await hostMemoryBytes(sandboxId)).toBeGreaterThan(1024 * 1024);
      // A command still running when the session pauses ends, saying why.
      const cut = client.exec.run.mutate({ sessionId: id, command: ['sleep', '30'], timeoutMs: 60_000 }).then(
        () => undefined,
        (error: Error) => error,
      );
      await new Promise((r) => setTimeout(r, 500));
      const paused = await client.sessions.pause.mutate({ sessionId: id });
      expect((await cut)?.message).toMatch(/paused while this ran/);
      expect(paused.state).toBe('paused');
      expect(paused.pausedAt).not.toBeNull();
      // Paused: the sandbox holds none of the host's memory.
      expect(await hostMemoryBytes(sandboxId)).toBeLessThanOrEqual(1024 * 1024);
      expect((await client.sessions.stats.query({ sessionId: id })).stats).toBeNull();
      expect((await client.sessions.pause.mutate({ sessionId: id })).state).toBe('paused');
      // A files call resumes it.
      expect((await client.files.read.query({ sessionId: id, path: 'kept.txt' })).content).toBe('kept');
      expect(await state(id)).toBe('running');
      if (memory) {
        // The counter carried on from its memory (a fresh one would start again from 1).
        const c1 = await count(id);
        expect(c1).toBeGreaterThan(3);
        await expect.poll(() => count(id), { timeout: 10_000 }).toBeGreaterThan(c1);
      } else {
        // Without saved memory its programs ended with the pause: the counter is gone, the workspace is not.
        expect(await sh(id, 'ps -eo args | grep -c "[w]hile true" || true')).toBe('0');
      }
      const resumed = await client.sessions.get.query({ sessionId: id });
      expect(resumed.pausedAt).toBeNull();
      const record = await get().api.app.deps.store.getSessionById(id);
      expect(record?.pausedMs).toBeGreaterThan(0);
    } finally {
      await destroyAll(id);
    }
  });

  it('an idle session pauses on its own; exec, files, the terminal and a preview request each resume it', {
    timeout: 300_000,
  }, async () => {
    const { client, api, token, memory } = get();
    const { id } = await client.sessions.create.mutate({});
    try {
      await client.files.write.mutate({
        sessionId: id,
        path: 'server.js',
        content:
          "let n = 0; require('http').createServer((q, s) => s.end('hits ' + ++n)).listen(3000, '127.0.0.1', () => console.log('up'));\n",
      });
      await sh(id, 'setsid node server.js >/tmp/server.log 2>&1 </dev/null & sleep 1; cat /tmp/server.log');
      await expect.poll(() => sh(id, 'cat /tmp/server.log'), { timeout: 20_000 }).toContain('up');
      const link = await client.previews.create.mutate({ sessionId: id, port: 3000 });
      const landed = await loopbackFetch(link.url, { redirect: 'manual' });
      const cookie = (landed.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
      const base = new URL(link.url).origin;
      expect(await (await loopbackFetch(`${base}/`, { headers: { cookie } })).text()).toBe('hits 1');

      // exec
      await idlePause(id);
      expect(await sh(id, 'echo awake')).toBe('awake');
      expect(await state(id)).toBe('running');

      // files
      await idlePause(id);
      expect((await client.files.list.query({ sessionId: id })).map((e) => e.name)).toContain('server.js');
      expect(await state(id)).toBe('running');

      // the terminal
      await idlePause(id);
      const term = openTerminal({ url: api.url, token, sessionId: id, WebSocket: WebSocket as never });
      try {
        await term.ready;
        expect(await state(id)).toBe('running');
        let out = '';
        term.onData((b) => {
          out += Buffer.from(b).toString();
        });
        term.write('echo term-$((40+2))\n');
        await expect.poll(() => out, { timeout: 10_000 }).toContain('term-42');
        // A pause ends the open terminal, saying why.
        const exit = new Promise<{ reason?: string }>((resolve) =>
          term.onMessage((m) => {
            if (m.type === 'exit') resolve(m);
          }),
        );
        await client.sessions.pause.mutate({ sessionId: id });
        expect((await exit).reason).toMatch(/paused/);
      } finally {
        term.close();
      }

      // a preview request
      expect(await state(id)).toBe('paused');
      const page = await loopbackFetch(`${base}/`, { headers: { cookie } });
      expect(await state(id)).toBe('running');
      // With memory, the dev server kept serving and kept its count; without, it ended with the pause.
      if (memory) expect(await page.text()).toBe('hits 2');

      // Nobody uses it, but it was asked to stay awake: the sweep leaves it running.
      await client.sessions.setKeepAwake.mutate({ sessionId: id, keepAwake: true });
      await api.app.deps.sessions.sweep(new Date(Date.now() + 11 * 60_000));
      expect(await state(id)).toBe('running');
    } finally {
      await destroyAll(id);
    }
  });

  it('fork: each copy has its own workspace and (with memory) its own running programs; the source runs on', {
    timeout: 300_000,
  }, async () => {
    const { client, memory } = get();
    const source = await client.sessions.create.mutate({});
    const made: string[] = [];
    try {
      await client.files.write.mutate({ sessionId: source.id, path: 'before.txt', content: 'before' });
      await sh(source.id, COUNTER);
      await expect.poll(() => count(source.id), { timeout: 10_000 }).toBeGreaterThan(3);
      const atFork = await count(source.id);
      const forks = await client.sessions.fork.mutate({ sessionId: source.id, count: 2 });
      made.push(...forks.map((f) => f.id));
      expect(forks).toHaveLength(2);
      const [a, b] = forks as [(typeof forks)[number], (typeof forks)[number]];
      for (const f of forks) {
        expect(f.parentId).toBe(source.id);
        expect(f.state).toBe('running');
      }
      expect(await state(source.id)).toBe('running');
      await expect.poll(() => count(source.id), { timeout: 10_000 }).toBeGreaterThan(atFork);
      // Files: the fork's own from then on.
      await client.files.write.mutate({ sessionId: a.id, path: 'only-a.txt', content: 'a' });
      await client.files.write.mutate({ sessionId: source.id, path: 'only-source.txt', content: 's' });
      const names = async (sessionId: string) =>
        (await client.files.list.query({ sessionId })).map((e) => e.name).sort();
      expect(await names(a.id)).toEqual(['before.txt', 'only-a.txt']);
      expect(await names(b.id)).toEqual(['before.txt']);
      expect(await names(source.id)).toEqual(['before.txt', 'only-source.txt']);
      if (memory) {
        // Memory duplicated, not shared: both counters carry on from the fork's point; stopping one leaves the other.
        expect(await count(a.id)).toBeGreaterThanOrEqual(atFork);
        expect(await count(b.id)).toBeGreaterThanOrEqual(atFork);
        await sh(a.id, 'pkill -f "while true" || true');
        const stoppedAt = await count(a.id);
        const bAt = await count(b.id);
        await expect.poll(() => count(b.id), { timeout: 10_000 }).toBeGreaterThan(bAt);
        expect(await count(a.id)).toBe(stoppedAt);
      }
    } finally {
      await destroyAll(source.id, ...made);
    }
  });

  it('snapshots: named, listed within the quota, restorable into a new session, deleted', {
    timeout: 300_000,
  }, async () => {
    const { client, memory } = get();
    const source = await client.sessions.create.mutate({});
    const made: string[] = [];
    try {
      await client.files.write.mutate({ sessionId: source.id, path: 'saved.txt', content: 'saved' });
      await sh(source.id, COUNTER);
      await expect.poll(() => count(source.id), { timeout: 10_000 }).toBeGreaterThan(3);
      const snap = await client.snapshots.create.mutate({ sessionId: source.id, name: 'checkpoint-one' });
      expect(snap).toMatchObject({ name: 'checkpoint-one', sessionId: source.id, memory });
      expect(snap.bytes).toBeGreaterThan(0);
      expect(
        await codeOf(client.snapshots.create.mutate({ sessionId: source.id, name: 'checkpoint-one' })),
      ).toBe('ALREADY_EXISTS');
      const listed = await client.snapshots.list.query();
      expect(listed.snapshots.map((s) => s.name)).toEqual(['checkpoint-one']);
      expect(listed.usedBytes).toBe(snap.bytes);
      await client.files.write.mutate({ sessionId: source.id, path: 'after.txt', content: 'after' });
      const restored = await client.sessions.create.mutate({ fromSnapshot: 'checkpoint-one' });
      made.push(restored.id);
      expect(restored.fromSnapshotId).toBe(snap.id);
      expect((await client.files.list.query({ sessionId: restored.id })).map((e) => e.name)).toEqual([
        'saved.txt',
      ]);
      if (memory) await expect.poll(() => count(restored.id), { timeout: 10_000 }).toBeGreaterThan(3);
      await client.snapshots.delete.mutate({ snapshot: 'checkpoint-one' });
      expect((await client.snapshots.list.query()).snapshots).toEqual([]);
      expect(await codeOf(client.sessions.create.mutate({ fromSnapshot: snap.id }))).toBe('NOT_FOUND');
      // The restored session keeps its own copy.
      expect((await client.files.read.query({ sessionId: restored.id, path: 'saved.txt' })).content).toBe(
        'saved',
      );
    } finally {
      await destroyAll(source.id, ...made);
    }
  });

  it('a saved state that cannot be restored: RESTORE_FAILED, workspace intact, the session starts cold', {
    timeout: 180_000,
  }, async (ctx) => {
    const { client, damageSavedState } = get();
    if (!damageSavedState) {
      ctx.skip(true, 'this backend saves no memory, so there is nothing to fail to restore');
      return;
    }
    const { id } = await client.sessions.create.mutate({});
    try {
      await client.files.write.mutate({ sessionId: id, path: 'kept.txt', content: 'kept' });
      await client.sessions.pause.mutate({ sessionId: id });
      await damageSavedState(await sandboxOf(id));
      expect(await codeOf(client.exec.run.mutate({ sessionId: id, command: ['true'] }))).toBe(
        'RESTORE_FAILED',
      );
      expect(await state(id)).toBe('stopped');
      await client.sessions.start.mutate({ sessionId: id });
      expect((await client.files.read.query({ sessionId: id, path: 'kept.txt' })).content).toBe('kept');
    } finally {
      await destroyAll(id);
    }
  });
}
