import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { isIsolationError } from '../../errors.ts';
import { newSandboxId } from '../../sandbox-id.ts';
import { MANAGED_LABEL, type SandboxSpec } from '../../types.ts';
import { describeError, expectIsolationError, expectOk, nonce, run, settle, sh } from '../fixtures.ts';
import { type ConformanceHarness, RUN_LABEL, SHARED_LIMITS, SMALL_LIMITS } from '../harness.ts';

/** Backend and sandbox lifecycle: create, get, list, states, stats, destroy. */
export function lifecycleCases(h: ConformanceHarness): void {
  describe('backend', () => {
    h.case('backend.available', 'available() is ok and capabilities() is well-formed', async () => {
      expect(await h.backend.available()).toEqual({ ok: true });
      const caps = h.backend.capabilities();
      for (const key of ['pause', 'checkpoint', 'snapshots', 'terminal', 'diskQuota', 'connect'] as const) {
        expect(typeof caps[key], `capabilities().${key}`).toBe('boolean');
      }
      expect(caps.networkModes).toContain('none');
      expect(typeof h.backend.name).toBe('string');
      expect(h.backend.name.length).toBeGreaterThan(0);
    });
  });

  describe('lifecycle', () => {
    h.case('lifecycle.create-info', 'a created sandbox is running and info() echoes the spec', async () => {
      const sandbox = await h.shared();
      expect(sandbox.backend).toBe(h.backend.name);
      const info = await sandbox.info();
      expect(info.id).toBe(sandbox.id);
      expect(info.backend).toBe(h.backend.name);
      expect(info.image).toBe(h.options.image);
      expect(info.state).toBe('running');
      expect(info.labels).toMatchObject(h.labels);
      expect(info.createdAt).toBeInstanceOf(Date);
      expect(Number.isNaN(info.createdAt.getTime())).toBe(false);
      expect(info.failure).toBeUndefined();
    });

    h.case(
      'lifecycle.create-rejects-invalid-spec',
      'create() refuses malformed limits, a network other than none and reserved labels',
      async () => {
        const base: SandboxSpec = {
          image: h.options.image,
          resources: SMALL_LIMITS,
          labels: { ...h.labels },
        };
        const bad: Array<[string, SandboxSpec]> = [
          ['memoryBytes 0', { ...base, resources: { ...SMALL_LIMITS, memoryBytes: 0 } }],
          ['memoryBytes -1', { ...base, resources: { ...SMALL_LIMITS, memoryBytes: -1 } }],
          ['memoryBytes NaN', { ...base, resources: { ...SMALL_LIMITS, memoryBytes: Number.NaN } }],
          ['cpus 0', { ...base, resources: { ...SMALL_LIMITS, cpus: 0 } }],
          ['pids 0', { ...base, resources: { ...SMALL_LIMITS, pids: 0 } }],
          ['pids Infinity', { ...base, resources: { ...SMALL_LIMITS, pids: Number.POSITIVE_INFINITY } }],
          ['diskBytes -1', { ...base, resources: { ...SMALL_LIMITS, diskBytes: -1 } }],
          ['inodes 1.5', { ...base, resources: { ...SMALL_LIMITS, inodes: 1.5 } }],
          ['tmpBytes -1', { ...base, resources: { ...SMALL_LIMITS, tmpBytes: -1 } }],
          ['image empty', { ...base, image: '' }],
        ];
        for (const [what, spec] of bad) {
          await expectIsolationError(h.backend.create(spec), ['INVALID_INPUT'], `create with ${what}`);
        }
        await expectIsolationError(
          h.backend.create({ ...base, network: 'host' as unknown as 'none' }),
          ['INVALID_INPUT', 'UNSUPPORTED'],
          "create with network 'host'",
        );
        // A caller must not be able to forge the backend's own labels (reconciliation trusts them).
        const forged = await settle(
          h.backend.create({ ...base, labels: { ...h.labels, [MANAGED_LABEL]: 'forged-by-caller' } }),
        );
        if (forged.ok) {
          const info = await forged.value.info();
          await forged.value.destroy();
          expect(info.labels[MANAGED_LABEL], 'a caller-supplied studio.* label was kept').not.toBe(
            'forged-by-caller',
          );
        } else {
          expect(isIsolationError(forged.error, 'INVALID_INPUT'), describeError(forged.error)).toBe(true);
        }
      },
    );

    h.case(
      'lifecycle.create-with-id',
      'create() takes a caller-chosen id, and refuses it again without touching the sandbox that holds it',
      async () => {
        const id = newSandboxId();
        const spec: SandboxSpec = {
          id,
          image: h.options.image,
          resources: SMALL_LIMITS,
          labels: { ...h.labels },
        };
        const sandbox = await h.backend.create(spec);
        try {
          expect(sandbox.id).toBe(id);
          expect((await sandbox.info()).id).toBe(id);
          await sandbox.writeFile('kept.txt', 'kept');
          // A reused id (a retried create, a bug in the caller) must not be "cleaned up" as a failed create.
          await expectIsolationError(h.backend.create(spec), ['ALREADY_EXISTS'], 'create with an id in use');
          expect((await h.backend.get(id)).id).toBe(id);
          expect((await sandbox.info()).state).toBe('running');
          expect(new TextDecoder().decode(await sandbox.readFile('kept.txt'))).toBe('kept');
          expectOk(await run(sandbox, ['true']), 'exec after the refused create');
        } finally {
          await sandbox.destroy();
        }
      },
    );

    h.case(
      'lifecycle.get',
      'get(id) returns a working handle, and the first handle keeps working',
      async () => {
        // Dedicated: a backend whose second handle breaks the first must fail here, not hang the shared sandbox.
        await using fx = await h.dedicated();
        const sandbox = fx.sandbox;
        expectOk(await run(sandbox, ['true']), 'exec through the first handle');
        const again = await h.backend.get(sandbox.id);
        expect(again.id).toBe(sandbox.id);
        expect(again.backend).toBe(h.backend.name);
        const quick = { timeoutMs: 20_000 };
        const viaGet = await run(again, ['echo', 'via-get'], quick);
        expect(viaGet.out).toBe('via-get\n');
        const viaFirst = await Promise.race([
          run(sandbox, ['echo', 'via-first'], quick),
          new Promise<never>((_, reject) =>
            setTimeout(
              () => reject(new Error('the first handle hangs after get() opened a second one')),
              30_000,
            ),
          ),
        ]);
        expect(viaFirst.out).toBe('via-first\n');
        expect((await run(again, ['echo', 'again'], quick)).out).toBe('again\n');
      },
    );

    h.case('lifecycle.get-unknown', 'get() of an unknown id rejects NOT_FOUND', async () => {
      await expectIsolationError(h.backend.get(nonce('no-such-sandbox')), ['NOT_FOUND'], 'get(unknown)');
      await expectIsolationError(
        h.backend.get('../../etc'),
        ['NOT_FOUND', 'INVALID_INPUT'],
        'get(path-like id)',
      );
    });

    h.case('lifecycle.list-by-labels', 'list() filters by every given label', async () => {
      const sandbox = await h.shared();
      const mine = await h.backend.list({ labels: { [RUN_LABEL]: h.runId } });
      const entry = mine.find((i) => i.id === sandbox.id);
      expect(entry, 'shared sandbox listed by its run label').toBeDefined();
      expect(entry?.state).toBe('running');
      expect(entry?.labels).toMatchObject(h.labels);
      for (const info of mine) expect(info.labels[RUN_LABEL]).toBe(h.runId);
      const none = await h.backend.list({ labels: { ...h.labels, 'conformance.no-match': nonce('x') } });
      expect(none.map((i) => i.id)).not.toContain(sandbox.id);
      const other = await h.backend.list({ labels: { [RUN_LABEL]: nonce('other-run') } });
      expect(other).toEqual([]);
      const all = await h.backend.list();
      expect(all.map((i) => i.id)).toContain(sandbox.id);
    });

    h.case(
      'lifecycle.state-transitions',
      'running → stopped → running; exec on a stopped sandbox is INVALID_STATE',
      async () => {
        await using fx = await h.dedicated();
        const sandbox = fx.sandbox;
        expect((await sandbox.info()).state).toBe('running');
        await sandbox.stop();
        expect((await sandbox.info()).state).toBe('stopped');
        expect((await h.backend.list({ labels: h.labels })).find((i) => i.id === sandbox.id)?.state).toBe(
          'stopped',
        );
        await expectIsolationError(
          sandbox.exec(['true'], { timeoutMs: 10_000, maxOutputBytes: 1024 }),
          ['INVALID_STATE'],
          'exec on a stopped sandbox',
        );
        await sandbox.start();
        expect((await sandbox.info()).state).toBe('running');
        expectOk(await run(sandbox, ['true']), 'exec after start');
      },
    );

    h.case('lifecycle.stop-start-keeps-workspace', 'stop() then start() keeps workspace files', async () => {
      await using fx = await h.dedicated();
      const sandbox = fx.sandbox;
      const ws = h.workspace(sandbox);
      const token = nonce('keep');
      await sandbox.writeFile('keep/api.txt', token, { createParents: true });
      expectOk(await sh(sandbox, `printf %s '${token}' > ${ws}/keep/exec.txt`), 'write from exec');
      await sandbox.stop();
      await sandbox.start();
      expect(Buffer.from(await sandbox.readFile('keep/api.txt')).toString()).toBe(token);
      const r = await run(sandbox, ['cat', `${ws}/keep/exec.txt`, `${ws}/keep/api.txt`]);
      expectOk(r, 'cat after restart');
      expect(r.out).toBe(token + token);
    });

    h.case('lifecycle.pause-resume', 'pause()/resume() work, or reject UNSUPPORTED as declared', async () => {
      await using fx = await h.dedicated();
      const sandbox = fx.sandbox;
      if (!h.backend.capabilities().pause) {
        await expectIsolationError(sandbox.pause(), ['UNSUPPORTED'], 'pause() without the capability');
        return;
      }
      await sandbox.pause();
      try {
        expect((await sandbox.info()).state).toBe('paused');
      } finally {
        await sandbox.resume();
      }
      expect((await sandbox.info()).state).toBe('running');
      expectOk(await run(sandbox, ['true']), 'exec after resume');
    });

    h.case('lifecycle.stats', 'stats() reports sane numbers within the limits', async () => {
      const sandbox = await h.shared();
      expectOk(
        await sh(sandbox, 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done'),
        'burn a little CPU so cpuNanos is positive',
      );
      const s = await sandbox.stats();
      expect(s.memoryLimitBytes).toBe(SHARED_LIMITS.memoryBytes);
      expect(s.memoryBytes).toBeGreaterThan(0);
      expect(s.memoryBytes).toBeLessThanOrEqual(s.memoryLimitBytes);
      expect(s.cpuNanos).toBeGreaterThan(0);
      expect(s.pids).toBeGreaterThanOrEqual(1);
      expect(s.pids).toBeLessThanOrEqual(SHARED_LIMITS.pids);
      if (h.backend.capabilities().diskQuota) {
        expect(s.diskLimitBytes, 'diskLimitBytes with a disk quota').not.toBeNull();
        expect(s.diskLimitBytes).toBeGreaterThan(0);
        expect(s.diskLimitBytes).toBeLessThanOrEqual(SHARED_LIMITS.diskBytes * 1.05);
        expect(s.diskUsedBytes).not.toBeNull();
      }
      if (s.diskUsedBytes !== null) {
        expect(s.diskUsedBytes).toBeGreaterThanOrEqual(0);
        if (s.diskLimitBytes !== null) expect(s.diskUsedBytes).toBeLessThanOrEqual(s.diskLimitBytes);
      }
    });

    h.case(
      'lifecycle.destroy-idempotent',
      'destroy() twice is fine; afterwards the id is NOT_FOUND',
      async () => {
        const sandbox = await h.create();
        await sandbox.destroy();
        await sandbox.destroy();
        await h.backend.destroy(sandbox.id);
        await h.backend.destroy(nonce('never-existed'));
        await expectIsolationError(h.backend.get(sandbox.id), ['NOT_FOUND'], 'get() after destroy');
        await expectIsolationError(sandbox.info(), ['NOT_FOUND'], 'info() after destroy');
        await expectIsolationError(
          sandbox.exec(['true'], { timeoutMs: 10_000, maxOutputBytes: 1024 }),
          ['NOT_FOUND'],
          'exec() after destroy',
        );
        expect((await h.backend.list({ labels: h.labels })).map((i) => i.id)).not.toContain(sandbox.id);
        await h.destroy(sandbox);
      },
    );
  });
}

/** Runs last: after every sandbox of the run is destroyed, the backend lists none and leaves no workspace. */
export function cleanupCases(h: ConformanceHarness): void {
  describe('cleanup', () => {
    h.case('lifecycle.destroy-leaves-nothing', 'after the run, list() by its labels is empty', async () => {
      await h.destroyAll();
      expect(await h.backend.list({ labels: { [RUN_LABEL]: h.runId } })).toEqual([]);
      const hostPath = h.options.hostPath;
      if (hostPath !== undefined && h.everCreated.size > 0) {
        // A workspace named after its sandbox must be gone from the host too.
        const names = listNames(hostPath, 2);
        const leftovers = names.filter((name) => [...h.everCreated].some((id) => name.includes(id)));
        expect(leftovers, `host entries under ${hostPath} named after destroyed sandboxes`).toEqual([]);
      }
      if (h.everSnapshotted.size > 0) {
        // Every case deletes the snapshots it made.
        const kept = (await h.backend.listSnapshots()).filter((s) => h.everSnapshotted.has(s.id));
        expect(
          kept.map((s) => s.id),
          'snapshots of this run still listed',
        ).toEqual([]);
      }
    });
  });
}

function listNames(dir: string, depth: number): string[] {
  if (depth === 0) return [];
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries.flatMap((name) => [join(dir, name), ...listNames(join(dir, name), depth - 1)]);
}
