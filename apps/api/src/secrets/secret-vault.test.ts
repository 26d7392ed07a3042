import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSecretsKey, PLACEHOLDER_PREFIX, SecretVault } from './secret-vault.ts';

const dir = mkdtempSync(join(tmpdir(), 'studio-vault-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('SecretVault', () => {
  const vault = new SecretVault(randomBytes(32));

  it('seals a value so that it opens for its owner and name only', () => {
    const sealed = vault.seal('usr_a', 'API_KEY', 'sk-secret');
    expect(sealed).not.toContain('sk-secret');
    expect(vault.open('usr_a', 'API_KEY', sealed)).toBe('sk-secret');
    expect(() => vault.open('usr_b', 'API_KEY', sealed)).toThrow();
    expect(() => vault.open('usr_a', 'OTHER', sealed)).toThrow();
    expect(vault.seal('usr_a', 'API_KEY', 'sk-secret')).not.toBe(sealed); // a fresh IV each time
  });

  it('refuses an altered value and another key', () => {
    const sealed = vault.seal('usr_a', 'K', 'value');
    const parts = sealed.split('.');
    const body = Buffer.from(parts[3] as string, 'base64url');
    body[0] = (body[0] as number) ^ 1;
    parts[3] = body.toString('base64url');
    expect(() => vault.open('usr_a', 'K', parts.join('.'))).toThrow();
    expect(() => new SecretVault(randomBytes(32)).open('usr_a', 'K', sealed)).toThrow();
    expect(() => vault.open('usr_a', 'K', 'not sealed')).toThrow();
  });

  it('derives placeholders that differ per session and name, and stay the same across restarts', () => {
    const key = randomBytes(32);
    const a = new SecretVault(key);
    const b = new SecretVault(key);
    expect(a.placeholder('ses_1', 'K')).toBe(b.placeholder('ses_1', 'K'));
    expect(a.placeholder('ses_1', 'K')).not.toBe(a.placeholder('ses_2', 'K'));
    expect(a.placeholder('ses_1', 'K')).not.toBe(a.placeholder('ses_1', 'L'));
    expect(a.placeholder('ses_1', 'K').startsWith(PLACEHOLDER_PREFIX)).toBe(true);
  });
});

describe('loadSecretsKey', () => {
  it('makes a key file once (0600) and reads the same key after', () => {
    const first = loadSecretsKey({ dataDir: dir });
    expect(first).toHaveLength(32);
    expect(statSync(join(dir, 'secrets-key')).mode & 0o777).toBe(0o600);
    expect(loadSecretsKey({ dataDir: dir }).equals(first)).toBe(true);
    expect(readFileSync(join(dir, 'secrets-key'), 'utf8')).not.toBe('');
  });

  it('takes STUDIO_SECRETS_KEY as base64 of 32 bytes, and names the fix otherwise', () => {
    const key = randomBytes(32);
    expect(loadSecretsKey({ secret: key.toString('base64'), dataDir: dir }).equals(key)).toBe(true);
    expect(() => loadSecretsKey({ secret: 'short', dataDir: dir })).toThrow(/openssl rand -base64 32/);
  });
});
