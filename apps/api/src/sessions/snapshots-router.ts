import type { SnapshotRecord } from '@studio/db';
import { snapshotByRefInput, snapshotCreateInput } from '@studio/policy';
import { auditOf } from '../core/context.ts';
import { authedProcedure, router } from '../core/trpc.ts';

/** What clients see of a snapshot (no instance or backend paths). */
export const snapshotView = (s: SnapshotRecord) => ({
  id: s.id,
  name: s.name ?? s.id,
  /** The session it was taken of (which may since be destroyed). */
  sessionId: s.sessionId,
  backend: s.backend,
  templateId: s.templateId ?? null,
  /** True when it holds memory and running programs (gVisor), false: the workspace only. */
  memory: s.memory,
  /** Bytes it takes on the host's disk, counted against the owner's snapshot quota. */
  bytes: s.bytes,
  createdAt: s.createdAt.toISOString(),
});

export type SnapshotView = ReturnType<typeof snapshotView>;

/**
 * Snapshots (issue 20): named copies of a session (its workspace, and its memory where the backend can), kept
 * under the data directory within the owner's quota (policy `snapshots.maxBytesPerUser`) and restorable with
 * `sessions.create({ fromSnapshot })`.
 */
export const snapshotsRouter = router({
  /** Takes a snapshot of the caller's session; the session pauses only for the capture and runs on. */
  create: authedProcedure
    .input(snapshotCreateInput)
    .mutation(async ({ ctx, input }) =>
      snapshotView(
        await ctx.deps.sessions.snapshot(ctx.principal.userId, input.sessionId, input.name, auditOf(ctx)),
      ),
    ),

  /** The caller's snapshots, newest first, with the quota they count against. */
  list: authedProcedure.query(async ({ ctx }) => {
    const snapshots = (await ctx.deps.sessions.listSnapshots(ctx.principal.userId)).map(snapshotView);
    return {
      snapshots,
      usedBytes: snapshots.reduce((n, s) => n + s.bytes, 0),
      maxBytes: ctx.deps.policy.snapshots.maxBytesPerUser,
    };
  }),

  get: authedProcedure
    .input(snapshotByRefInput)
    .query(async ({ ctx, input }) =>
      snapshotView(await ctx.deps.sessions.getSnapshot(ctx.principal.userId, input.snapshot)),
    ),

  /** Removes the caller's snapshot for good (sessions made from it keep their own copies). */
  delete: authedProcedure
    .input(snapshotByRefInput)
    .mutation(async ({ ctx, input }) =>
      snapshotView(
        await ctx.deps.sessions.deleteSnapshot(ctx.principal.userId, input.snapshot, auditOf(ctx)),
      ),
    ),
});
