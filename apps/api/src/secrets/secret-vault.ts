import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const KEY_BYTES = 32;
const IV_BYTES = 12;
const VERSION = 'v1';
/** What every placeholder starts with: recognisable in a program's output, and never a real credential. */
export const PLACEHOLDER_PREFIX = 'studio-placeholder-';

/**
 * The operator's secrets key: `STUDIO_SECRETS_KEY` (32 bytes, base64 or base64url) when set, otherwise
 * `<dataDir>/secrets-key`, made on the first start (0600). Whoever holds this key and a copy of the database holds
 * the secrets: keep the file out of database backups, or set the variable from the operator's own secret store.
 */
export function loadSecretsKey(options: { secret?: string | undefined; dataDir: string }): Buffer {
  if (options.secret !== undefined) return decodeKey(options.secret, 'STUDIO_SECRETS_KEY');
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const file = join(options.dataDir, 'secrets-key');
  try {
    const fd = openSync(file, 'wx', 0o600);
    try {
      writeSync(fd, randomBytes(KEY_BYTES).toString('base64url'));
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  return decodeKey(readFileSync(file, 'utf8').trim(), file);
}

function decodeKey(text: string, where: string): Buffer {
  const key = Buffer.from(text.replace(/\+/g, '-').replace(/\//g, '_'), 'base64url');
  if (key.length !== KEY_BYTES) {
    throw new Error(
      `${where} must hold ${KEY_BYTES} random bytes as base64 (try: openssl rand -base64 32); it holds ${key.length}`,
    );
  }
  return key;
}

/**
 * Seals and opens secret values (AES-256-GCM), and derives each session's placeholders. A sealed value is bound
 * to its owner and name (the additional data), so a value copied to another row of the database does not open.
 * Placeholders are an HMAC of the session and the name under a key derived from the secrets key: stable across
 * restarts (programs keep the environment they started with) and different in every session.
 */
export class SecretVault {
  readonly #sealKey: Buffer;
  readonly #placeholderKey: Buffer;

  constructor(key: Buffer) {
    if (key.length !== KEY_BYTES) throw new Error(`the secrets key must be ${KEY_BYTES} bytes`);
    this.#sealKey = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'studio secrets: seal', KEY_BYTES));
    this.#placeholderKey = Buffer.from(
      hkdfSync('sha256', key, Buffer.alloc(0), 'studio secrets: placeholder', KEY_BYTES),
    );
  }

  /** The stored form of `value`: `v1.<iv>.<tag>.<ciphertext>`, base64url. */
  seal(ownerId: string, name: string, value: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#sealKey, iv);
    cipher.setAAD(Buffer.from(`${ownerId}\0${name}`));
    const body = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
    return [VERSION, iv, cipher.getAuthTag(), body]
      .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
      .join('.');
  }

  /** The value of a sealed secret; throws when it was sealed under another key, owner or name, or was altered. */
  open(ownerId: string, name: string, sealed: string): string {
    const [version, iv, tag, body] = sealed.split('.');
    if (version !== VERSION || iv === undefined || tag === undefined || body === undefined) {
      throw new Error('not a sealed secret');
    }
    const decipher = createDecipheriv('aes-256-gcm', this.#sealKey, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(`${ownerId}\0${name}`));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString(
      'utf8',
    );
  }

  /** The placeholder session `sessionId` sees for secret `name`. */
  placeholder(sessionId: string, name: string): string {
    const mac = createHmac('sha256', this.#placeholderKey)
      .update(`${sessionId}\0${name}`)
      .digest('base64url');
    return `${PLACEHOLDER_PREFIX}${mac.slice(0, 32)}`;
  }
}
