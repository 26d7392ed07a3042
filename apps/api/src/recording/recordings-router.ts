import { recordingsGetInput, recordingsListInput } from '@studio/policy';
import { auditOf, type Context } from '../core/context.ts';
import { AppError } from '../core/errors.ts';
import { authedProcedure, principalOf, router } from '../core/trpc.ts';
import type { RecordingListing } from './recorder.ts';

/** Your session (NOT_FOUND for another user's, as every session procedure), then its recorder. */
async function ownRecording(ctx: Context, sessionId: string) {
  await ctx.deps.sessions.get(principalOf(ctx).userId, sessionId, auditOf(ctx));
  return ctx.deps.recorder;
}

export const recordingsRouter = router({
  /**
   * A session's recording (your sessions only; another user's is NOT_FOUND): whether recording is on, its size
   * against the limit, whether it stopped at the limit, and its files: the event log (`events.jsonl`) and one
   * asciicast v2 file per terminal (`terminal-<n>.cast`) with who opened it, when, its size and duration.
   */
  list: authedProcedure
    .input(recordingsListInput)
    .query(async ({ ctx, input }): Promise<RecordingListing> => {
      const recorder = await ownRecording(ctx, input.sessionId);
      if (!recorder) {
        return {
          enabled: ctx.deps.policy.recording.enabled,
          maxBytes: ctx.deps.policy.recording.maxBytesPerSession,
          bytes: 0,
          stopped: false,
          files: [],
        };
      }
      return recorder.list(input.sessionId);
    }),

  /** One file of a session's recording as text (a name `recordings.list` gave; at most the session's limit). */
  get: authedProcedure.input(recordingsGetInput).query(async ({ ctx, input }) => {
    const recorder = await ownRecording(ctx, input.sessionId);
    const text = await recorder?.read(input.sessionId, input.file);
    if (text === undefined) {
      throw new AppError(
        'NOT_FOUND',
        `this session's recording has no ${input.file}; recordings.list names its files`,
      );
    }
    return { file: input.file, text };
  }),
});
