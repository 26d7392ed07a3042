import { z } from 'zod';
import { sessionIdSchema } from './schemas.ts';

/**
 * The names of a session's recording files: `events.jsonl` (the event log) and `terminal-<n>.cast` (one
 * asciicast v2 file per terminal, numbered from 1). Security meaning: the only names the API reads under a
 * session's recording folder; anything else (a path, `..`, another extension) is refused before the disk is
 * touched, so a request cannot name a file outside the folder.
 */
export const RECORDING_FILE_PATTERN = /^(?:events\.jsonl|terminal-[1-9][0-9]{0,5}\.cast)$/;

/** A recording file's name, matched by {@link RECORDING_FILE_PATTERN}. Security meaning: no path traversal. */
export const recordingFileSchema = z.string().max(32).regex(RECORDING_FILE_PATTERN, {
  error: 'file must be events.jsonl or terminal-<n>.cast, as recordings.list names them',
});

/** `recordings.list`: a session's recording (your sessions only; another user's is NOT_FOUND). */
export const recordingsListInput = z.strictObject({ sessionId: sessionIdSchema });

/** `recordings.get`: one file of a session's recording, by the name `recordings.list` gave. */
export const recordingsGetInput = z.strictObject({ sessionId: sessionIdSchema, file: recordingFileSchema });

export type RecordingsListInput = z.output<typeof recordingsListInput>;
export type RecordingsGetInput = z.output<typeof recordingsGetInput>;
