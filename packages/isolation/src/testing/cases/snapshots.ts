import { describe, expect, type TestContext } from 'vitest';
import { newSnapshotId } from '../../sandbox-id.ts';
import type { Sandbox } from '../../types.ts';
import {
  expectIsolationError,
  expectNoProcesses,
  expectOk,
  nonce,
  processesMatching,
  run,
  sh,
  text,
  waitFor,
} from '../fixtures.ts';
import { type ConformanceHarness, SMALL_LIMITS } from '../harness.ts';

const QUICK = { timeoutMs: 10_000, maxOutputBytes: 1024 } as const;

/**
 * Suspend, snapshots and forks (issue 20): what survives is the workspace always, and memory (a running program
 * carrying on) exactly when the backend declares `checkpoint`. Every case but `snapshots.declared` needs the
 * `snapshots` capability and skips, with the reason, without it.
 */
export function snapshotCases(h: ConformanceHarness): void {
  /** Skips the case when the backend declares no snapshots (`snapshots.declared` checks the refusals then). */
  const needSnapshots = (ctx: TestContext): void => {
    if (!h.backend.capabilities().snapshots) {
      ctx.skip(
        'the backend declares no snapshots capability; snapshots.declared checks that it refuses them',
      );
    }
  };

  describe('snapshots', () => {
    h.case(
      'snapshots.declared',
      'without the snapshots capability every snapshot operation rejects UNSUPPORTED; with it, unknown ids behave',
      async () => {
        const caps = h.backend.capabilities();
        expect(typeof caps.snapshots, 'capabilities().snapshots').toBe('boolean');
        // Saved memory only ever travels in a suspend or a snapshot.
        if (caps.checkpoint) expect(caps.snapshots, 'checkpoint without snapshots').toBe(true);
        const unknown = newSnapshotId();
        const fromUnknown = h.create(SMALL_LIMITS, { fromSnapshot: unknown });
        if (caps.snapshots) {
          await expectIsolationError(fromUnknown, ['NOT_FOUND'], 'create from an unknown snapshot');
          await h.backend.deleteSnapshot(unknown);
          expect(Array.isArray(await h.backend.listSnapshots())).toBe(true);
          return;
        }
        await expectIsolationError(
          fromUnknown,
          ['UNSUPPORTED'],
          'create({ fromSnapshot }) without snapshots',
        );
        // Decided: deleteSnapshot is refused like the rest (a caller learns the capability the same way from every
        // method), and listSnapshots() lists nothing (there is nothing kept, and reconciliation may call it anywhere).
        await expectIsolationError(
          h.backend.deleteSnapshot(unknown),
          ['UNSUPPORTED'],
          'deleteSnapshot() without snapshots',
        );
        expect(await h.backend.listSnapshots()).toEqual([]);
        await using fx = await h.dedicated();
        const sandbox = fx.sandbox;
        await expectIsolationError(sandbox.suspend(), ['UNSUPPORTED'], 'suspend() without snapshots');
        await expectIsolationError(
          sandbox.snapshot(newSnapshotId()),
          ['UNSUPPORTED'],
          'snapshot() without snapshots',
        );
        // A refused suspend left it alone.
        expect((await sandbox.info()).state).toBe('running');
        expectOk(await run(sandbox, ['true']), 'exec after the refused suspend');
      },
    );

    h.case(
      'snapshots.suspend-start',
      'suspend() saves and releases the sandbox (state suspended, exec refused); start() brings back the workspace, and the memory exactly with checkpoint',
      async (ctx) => {
        needSnapshots(ctx);
        const checkpoint = h.backend.capabilities().checkpoint;
        await using fx = await h.dedicated();
        const sandbox = fx.sandbox;
        const ws = h.workspace(sandbox);
        const token = nonce('suspended');
        const tag = nonce('counter');
        try {
          await sandbox.writeFile('suspend/kept.txt', token, { createParents: true });
          await startCounter(sandbox, tag);
          const before = await countAbove(sandbox, tag, 2);

          const result = await sandbox.suspend();
          expect(result, 'suspend() says whether memory was saved: the checkpoint capability').toEqual({
            memory: checkpoint,
          });
          expect((await sandbox.info()).state).toBe('suspended');
          const listed = await h.backend.list({ labels: h.labels });
          expect(listed.find((i) => i.id === sandbox.id)?.state, 'list() of a suspended sandbox').toBe(
            'suspended',
          );
          await expectIsolationError(
            sandbox.exec(['true'], QUICK),
            ['INVALID_STATE'],
            'exec while suspended',
          );

          await sandbox.start();
          expect((await sandbox.info()).state).toBe('running');
          expect(text(await sandbox.readFile('suspend/kept.txt'))).toBe(token);
          const cat = await run(sandbox, ['cat', `${ws}/suspend/kept.txt`]);
          expectOk(cat, 'cat the workspace file after start');
          expect(cat.out).toBe(token);
          if (checkpoint) {
            // Memory survived (the shell variable), and /tmp with it: it counts on from where it was.
            const after = await countAbove(sandbox, tag, 0);
            expect(after, 'the counter after start, against its value before suspend').toBeGreaterThanOrEqual(
              before,
            );
            await countAbove(sandbox, tag, after);
          } else {
            // Started afresh: the program is gone (its /tmp may be gone too).
            await expectNoProcesses(sandbox, tag, 'the counter after a start without checkpoint');
          }
        } finally {
          await stopCounter(sandbox, tag);
        }
      },
    );

    h.case('snapshots.suspend-idempotent', 'suspend() twice and start() twice are fine', async (ctx) => {
      needSnapshots(ctx);
      await using fx = await h.dedicated();
      const sandbox = fx.sandbox;
      await sandbox.writeFile('twice.txt', 'twice');
      const first = await sandbox.suspend();
      const second = await sandbox.suspend();
      expect(second, 'the second suspend answers like the first').toEqual(first);
      expect((await sandbox.info()).state).toBe('suspended');
      await sandbox.start();
      await sandbox.start();
      expect((await sandbox.info()).state).toBe('running');
      expectOk(await run(sandbox, ['true']), 'exec after two starts');
      expect(text(await sandbox.readFile('twice.txt'))).toBe('twice');
    });

    h.case(
      'snapshots.fork-duplicates',
      'a snapshot of a running sandbox forks into independent copies; the source runs on',
      async (ctx) => {
        needSnapshots(ctx);
        const checkpoint = h.backend.capabilities().checkpoint;
        await using source = await h.dedicated();
        const token = nonce('base');
        const tag = nonce('counter');
        const snapshotId = newSnapshotId();
        h.everSnapshotted.add(snapshotId);
        try {
          await source.sandbox.writeFile('fork/base.txt', token, { createParents: true });
          await startCounter(source.sandbox, tag);
          const before = await countAbove(source.sandbox, tag, 2);

          const info = await source.sandbox.snapshot(snapshotId);
          expect(info).toMatchObject({
            id: snapshotId,
            sandboxId: source.sandbox.id,
            image: h.options.image,
            memory: checkpoint,
          });

          // The source was paused only for the capture: it runs on, and its counter still advances.
          expect((await source.sandbox.info()).state).toBe('running');
          const sourceNow = await countAbove(source.sandbox, tag, 0);
          await countAbove(source.sandbox, tag, sourceNow);
          await source.sandbox.writeFile('fork/source-after.txt', 'after');
          // The source's program ends here, so a fork's program (with checkpoint) is its own, even on a backend
          // whose sandboxes share a process table.
          await stopCounter(source.sandbox, tag);

          await using a = await h.dedicated(SMALL_LIMITS, { fromSnapshot: snapshotId });
          await using b = await h.dedicated(SMALL_LIMITS, { fromSnapshot: snapshotId });
          for (const [name, fork] of [
            ['fork A', a.sandbox],
            ['fork B', b.sandbox],
          ] as const) {
            expect((await fork.info()).state, name).toBe('running');
            expect(text(await fork.readFile('fork/base.txt')), `${name}: the snapshot's file`).toBe(token);
            await expectIsolationError(
              fork.readFile('fork/source-after.txt'),
              ['NOT_FOUND'],
              `${name}: a file the source wrote after the snapshot`,
            );
          }

          await a.sandbox.writeFile('fork/only-a.txt', 'a');
          await expectIsolationError(
            b.sandbox.readFile('fork/only-a.txt'),
            ['NOT_FOUND'],
            "fork B: fork A's file",
          );
          await expectIsolationError(
            source.sandbox.readFile('fork/only-a.txt'),
            ['NOT_FOUND'],
            "the source: fork A's file",
          );

          if (checkpoint) {
            // Memory was duplicated: each fork's counter carries on from the snapshot's value.
            for (const [name, fork] of [
              ['fork A', a.sandbox],
              ['fork B', b.sandbox],
            ] as const) {
              const now = await countAbove(fork, tag, 0);
              expect(
                now,
                `${name}: the counter against its value before the snapshot`,
              ).toBeGreaterThanOrEqual(before);
              await countAbove(fork, tag, now);
            }
            // And is each fork's own: ending A's counter leaves B's running.
            await stopCounter(a.sandbox, tag);
            await expectNoProcesses(a.sandbox, tag, 'fork A after killing its counter');
            expect(
              await processesMatching(b.sandbox, tag),
              "fork B's counter after A's was killed",
            ).not.toEqual([]);
            await countAbove(b.sandbox, tag, await countAbove(b.sandbox, tag, 0));
          } else {
            // Workspace only: the program starts afresh, so it does not run in a fork.
            await expectNoProcesses(a.sandbox, tag, 'fork A without checkpoint');
            await expectNoProcesses(b.sandbox, tag, 'fork B without checkpoint');
          }
          await stopCounter(a.sandbox, tag);
          await stopCounter(b.sandbox, tag);
        } finally {
          await stopCounter(source.sandbox, tag);
          await h.backend.deleteSnapshot(snapshotId);
        }
      },
    );

    h.case(
      'snapshots.list-delete',
      'listSnapshots() shows a snapshot with its fields; deleteSnapshot() removes it, idempotently; bad and reused ids are refused',
      async (ctx) => {
        needSnapshots(ctx);
        const caps = h.backend.capabilities();
        await using fx = await h.dedicated();
        const sandbox = fx.sandbox;
        await sandbox.writeFile('listed.txt', nonce('listed'));
        const snapshotId = newSnapshotId();
        h.everSnapshotted.add(snapshotId);
        try {
          for (const bad of ['snp-XYZ', '../../etc', `${snapshotId}/x`, '', 'sbx-0123456789abcdef']) {
            await expectIsolationError(
              sandbox.snapshot(bad),
              ['INVALID_INPUT'],
              `snapshot(${JSON.stringify(bad)})`,
            );
          }
          const made = await sandbox.snapshot(snapshotId);
          await expectIsolationError(
            sandbox.snapshot(snapshotId),
            ['ALREADY_EXISTS'],
            'snapshot() of an id in use',
          );

          const listed = (await h.backend.listSnapshots()).find((s) => s.id === snapshotId);
          expect(listed, 'the snapshot in listSnapshots()').toBeDefined();
          if (listed === undefined) return;
          expect(listed).toMatchObject({
            id: snapshotId,
            sandboxId: sandbox.id,
            image: h.options.image,
            memory: caps.checkpoint,
          });
          expect(listed.bytes, 'bytes on the host').toBeGreaterThan(0);
          expect(listed.diskBytes).toBeGreaterThan(0);
          expect(listed.inodes).toBeGreaterThan(0);
          if (caps.diskQuota) expect(listed.diskBytes).toBeLessThanOrEqual(SMALL_LIMITS.diskBytes * 1.05);
          expect(listed.createdAt).toBeInstanceOf(Date);
          expect(Number.isNaN(listed.createdAt.getTime())).toBe(false);
          expect(listed.createdAt.getTime()).toBe(made.createdAt.getTime());
          // The snapshot is taken from a running sandbox, which runs on.
          expect((await sandbox.info()).state).toBe('running');

          await expectIsolationError(
            h.create(SMALL_LIMITS, { fromSnapshot: newSnapshotId() }),
            ['NOT_FOUND'],
            'create from a snapshot that never existed',
          );
          await expectIsolationError(
            h.backend.create({
              image: `${h.options.image}-not-the-snapshots`,
              resources: SMALL_LIMITS,
              labels: { ...h.labels },
              fromSnapshot: snapshotId,
            }),
            ['INVALID_INPUT'],
            "create from the snapshot with another image than the snapshot's",
          );

          await h.backend.deleteSnapshot(snapshotId);
          expect((await h.backend.listSnapshots()).map((s) => s.id)).not.toContain(snapshotId);
          await h.backend.deleteSnapshot(snapshotId);
          await h.backend.deleteSnapshot('../../etc');
          await expectIsolationError(
            h.create(SMALL_LIMITS, { fromSnapshot: snapshotId }),
            ['NOT_FOUND'],
            'create from a deleted snapshot',
          );
          // The source is untouched by all of it.
          expectOk(await run(sandbox, ['true']), 'exec in the source after the delete');
        } finally {
          await h.backend.deleteSnapshot(snapshotId);
        }
      },
    );

    h.case(
      'snapshots.restore-failed',
      'start() of a suspended sandbox whose saved memory is damaged rejects RESTORE_FAILED and keeps the workspace',
      async (ctx) => {
        needSnapshots(ctx);
        if (!h.backend.capabilities().checkpoint) {
          ctx.skip(
            'the backend declares no checkpoint capability: a suspend saves no memory that could be damaged',
          );
        }
        const damage = h.options.damageSavedState;
        if (damage === undefined) {
          ctx.skip(
            'no damageSavedState hook given: the suite cannot damage the saved memory of this backend',
          );
          return;
        }
        await using fx = await h.dedicated();
        const sandbox = fx.sandbox;
        const token = nonce('intact');
        const tag = nonce('counter');
        try {
          await sandbox.writeFile('restore/kept.txt', token, { createParents: true });
          await startCounter(sandbox, tag);
          await countAbove(sandbox, tag, 2);
          expect(await sandbox.suspend()).toEqual({ memory: true });
          await damage(sandbox.id);
          await expectIsolationError(
            sandbox.start(),
            ['RESTORE_FAILED'],
            'start() with damaged saved memory',
          );
          expect((await sandbox.info()).state, 'state after a failed restore').toBe('stopped');
          // The saved state was discarded: the next start is a cold one, with the workspace intact.
          await sandbox.start();
          expect((await sandbox.info()).state).toBe('running');
          expect(text(await sandbox.readFile('restore/kept.txt'))).toBe(token);
          await expectNoProcesses(sandbox, tag, 'the counter after a cold start');
        } finally {
          await stopCounter(sandbox, tag);
        }
      },
    );
  });
}

/**
 * Starts a detached program that counts in a shell variable and writes the count to `/tmp/<tag>` every 100 ms: its
 * value after a restore tells whether memory survived. `tag` is in its command line, for `pgrep -f`.
 */
async function startCounter(sandbox: Sandbox, tag: string): Promise<void> {
  const loop = `tag=${tag}; i=0; while :; do i=$((i+1)); echo $i > /tmp/${tag}; sleep 0.1; done`;
  expectOk(await sh(sandbox, `setsid sh -c '${loop}' </dev/null >/dev/null 2>&1 &`), 'start the counter');
}

/** Waits until the counter reads more than `above`, and returns what it read. */
function countAbove(sandbox: Sandbox, tag: string, above: number): Promise<number> {
  return waitFor(`the counter /tmp/${tag} above ${above}`, async () => {
    const r = await sh(sandbox, `cat /tmp/${tag} 2>/dev/null`, { timeoutMs: 20_000 });
    // A read may meet the file between its truncation and its write: empty, so read again.
    const value = Number.parseInt(r.out.trim(), 10);
    return Number.isInteger(value) && value > above ? value : undefined;
  });
}

/** Ends the counter and removes its file; best effort (the sandbox may be suspended or gone). */
async function stopCounter(sandbox: Sandbox, tag: string): Promise<void> {
  // `[x]` so that the pattern does not match this shell's own command line, which holds it.
  const pattern = `tag=[${tag.slice(0, 1)}]${tag.slice(1)}`;
  await sh(sandbox, `pkill -f '${pattern}'; rm -f /tmp/${tag}`, QUICK).catch(() => undefined);
}
