import { z } from 'zod';
import { LABEL_NAME } from './lib/names.ts';

// Apart from snapshots.ts so that schemas.ts (sessions.create's fromSnapshot) can use it without an import cycle.

/**
 * A snapshot id (issue 20): `snp-` and 16 lowercase hex digits, the same id the isolation backend keeps it under.
 * Security meaning: names a snapshot but grants nothing (the API checks its owner); the fixed shape keeps it safe
 * as a host directory name (no separator, no dot segment).
 */
export const snapshotIdSchema = z.string().regex(/^snp-[0-9a-f]{16}$/, {
  error: 'snapshot id must be snp- followed by 16 of 0-9 a-f',
});

/** A snapshot's name, unique per owner: 1-63 of a-z 0-9 and -, starting with a letter (like a template's). */
export const snapshotNameSchema = z.string().max(63).regex(LABEL_NAME, {
  error: 'snapshot name must be 1-63 of a-z 0-9 and -, start with a letter and not end with -',
});

/** A snapshot named by id (`snp-…`) or by name. Ownership is the API's check. */
export const snapshotRefSchema = z.union([snapshotIdSchema, snapshotNameSchema], {
  error: 'snapshot must be a snapshot id (snp-…) or a name (a-z 0-9 -)',
});
