import { z } from 'zod';
import { sessionIdSchema } from './schemas.ts';
import { snapshotNameSchema, snapshotRefSchema } from './snapshot-ref.ts';

/** `snapshots.create`: `{ sessionId, name }`. The session must be the caller's and running or paused. */
export const snapshotCreateInput = z.strictObject({
  sessionId: sessionIdSchema,
  name: snapshotNameSchema,
});

/** `snapshots.get` / `snapshots.delete`: `{ snapshot }` by id or name. */
export const snapshotByRefInput = z.strictObject({ snapshot: snapshotRefSchema });

/**
 * `sessions.fork`: `{ sessionId, count }`, 1..20 new sessions (the policy's `snapshots.maxForks` and the live-session
 * limit bound it further). Security meaning: forks are the caller's own sessions and count against their limit.
 */
export const sessionForkInput = z.strictObject({
  sessionId: sessionIdSchema,
  count: z.int().min(1).max(20).default(1),
});

/** `sessions.setKeepAwake`: `{ sessionId, keepAwake }`: whether automatic pausing leaves the session running. */
export const sessionSetKeepAwakeInput = z.strictObject({
  sessionId: sessionIdSchema,
  keepAwake: z.boolean(),
});

export type SnapshotCreateInput = z.output<typeof snapshotCreateInput>;
export type SessionForkInput = z.output<typeof sessionForkInput>;
