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
