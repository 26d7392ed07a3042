import { createHash, randomBytes, randomFillSync } from 'node:crypto';

// Ids are cut from a block of CSPRNG output filled 256 ids at a time (as node's randomUUID does): one
// randomBytes(16) per id cost about 9 µs, most of it the call into the system's generator, on every request
// (each gets a request id). Each byte is handed out once, and the block is filled again before any is reused.
const ID_BYTES = 16;
const block = Buffer.alloc(ID_BYTES * 256);
let offset = block.length;

/** A random id: `prefix` + 22 URL-safe characters (128 bits). Session ids use `ses_`, as the policy requires. */
export function newId(prefix: 'ses_' | 'usr_' | 'tok_' | 'req_' | 'exe_' | 'wat_' | 'sec_' | 'tpl_'): string {
  if (offset === block.length) {
    randomFillSync(block);
    offset = 0;
  }
  const id = block.toString('base64url', offset, offset + ID_BYTES);
  offset += ID_BYTES;
  return `${prefix}${id}`;
}

/**
 * The 4 bytes that start the exec ids a node service hands out (issue 23): the first bytes of SHA-256 of its id.
 * An API replica finds an exec's node from its id alone ({@link execNodeTag}), with no shared table and no
 * question to every node; the other 12 bytes (96 bits) stay random, and the id keeps its usual shape.
 */
export function nodeTag(nodeId: string): Buffer {
  return createHash('sha256').update(nodeId, 'utf8').digest().subarray(0, 4);
}

/** A random exec id that carries `tag` ({@link nodeTag}) in its first 4 bytes; plain random without one. */
export function newTaggedId(prefix: 'exe_', tag: Buffer | null): string {
  if (tag === null) return newId(prefix);
  const bytes = randomBytes(ID_BYTES);
  tag.copy(bytes, 0, 0, 4);
  return `${prefix}${bytes.toString('base64url')}`;
}

/** The node tag in an id made by {@link newTaggedId} (hex), or null when the id is not one's shape. */
export function execNodeTag(execId: string): string | null {
  const m = /^exe_([A-Za-z0-9_-]{22})$/.exec(execId);
  return m
    ? Buffer.from(m[1] as string, 'base64url')
        .subarray(0, 4)
        .toString('hex')
    : null;
}

/** The prefix of every API token, so scanners and the auth layer recognise one without parsing. */
export const API_TOKEN_PREFIX = 'sst_';

/** A new API token secret: `sst_` + 43 URL-safe characters (256 bits). Shown once, stored only as its hash. */
export function newApiToken(): string {
  return `${API_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
}

/** The stored form of an API token: SHA-256, hex. Fine for 256-bit random secrets (no dictionary to try). */
export function hashApiToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}
