import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb, Store } from '@studio/db';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureAdmin, hashPassword, loadJwtKey, verifyPassword } from './auth.ts';

const dir = mkdtempSync(join(tmpdir(), 'studio-auth-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('passwords', () => {
  it('hashes with argon2id and verifies', async () => {
    const h = await hashPassword('correct horse battery');
    expect(h).toMatch(/^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$/);
    expect(await verifyPassword(h, 'correct horse battery')).toBe(true);
    expect(await verifyPassword(h, 'wrong')).toBe(false);
    expect(await verifyPassword(undefined, 'anything')).toBe(false);
  });
});

describe('loadJwtKey', () => {
  it('uses STUDIO_JWT_SECRET when given', () => {
    expect(new TextDecoder().decode(loadJwtKey({ secret: 's'.repeat(32), dataDir: dir }))).toBe(
      's'.repeat(32),
    );
  });

  it('generates a secret once, mode 0600, and reuses it', () => {
    const d = join(dir, 'gen');
    const a = loadJwtKey({ dataDir: d });
    expect(a.byteLength).toBeGreaterThanOrEqual(32);
    expect(statSync(join(d, 'jwt-secret')).mode & 0o777).toBe(0o600);
    expect(loadJwtKey({ dataDir: d })).toEqual(a);
  });

  it('refuses a stored secret that is too short', () => {
    const d = join(dir, 'short');
    loadJwtKey({ dataDir: d });
    writeFileSync(join(d, 'jwt-secret'), 'short');
    expect(() => loadJwtKey({ dataDir: d })).toThrow(/delete it/);
  });
});

describe('ensureAdmin', () => {
  it('creates admin once, with a generated or configured password', async () => {
    const store = await Store.open(await openDb({}));
    const first = await ensureAdmin(store, undefined);
    expect(first).toMatchObject({ created: true, username: 'admin', generated: true });
    expect(await ensureAdmin(store, undefined)).toEqual({ created: false });
    const user = await store.getUserByUsername('admin');
    expect(user?.role).toBe('admin');
    expect(first.created && (await verifyPassword(user?.passwordHash, first.password))).toBe(true);
    // A generated password has been in the log: the admin must change it at the first sign-in.
    expect(user?.mustChangePassword).toBe(true);
    await store.close();
    const chosen = await Store.open(await openDb({}));
    expect(await ensureAdmin(chosen, 'an-operator-chosen-password')).toMatchObject({ generated: false });
    expect((await chosen.getUserByUsername('admin'))?.mustChangePassword).toBe(false);
    await chosen.close();
  });
});

describe('Auth.login rate limits', () => {
  it('limits attempts per address across usernames, before hashing', async () => {
    const { Auth } = await import('./auth.ts');
    const { createRateLimiter } = await import('@studio/policy');
    const store = await Store.open(await openDb({}));
    const auth = new Auth({
      store,
      key: new TextEncoder().encode('k'.repeat(16) + 'K'.repeat(16)),
      addressLimiter: createRateLimiter({ limit: 3, windowMs: 60_000 }),
    });
    const codes: string[] = [];
    for (const name of ['a', 'b', 'c', 'd', 'e']) {
      codes.push(
        await auth.login(name, 'pw', '10.0.0.1').then(
          () => 'OK',
          (e: { code: string }) => e.code,
        ),
      );
    }
    expect(codes).toEqual([
      'INVALID_CREDENTIALS',
      'INVALID_CREDENTIALS',
      'INVALID_CREDENTIALS',
      'RATE_LIMITED',
      'RATE_LIMITED',
    ]);
    expect(await auth.login('f', 'pw', '10.0.0.2').catch((e: { code: string }) => e.code)).toBe(
      'INVALID_CREDENTIALS',
    );
    await store.close();
  });
});

describe('Auth.socketToken and Auth.recheck', () => {
  it('a socket token is the same sign-in; recheck fails once the sign-in expires, though the token is fresh', async () => {
    const { Auth } = await import('./auth.ts');
    const store = await Store.open(await openDb({}));
    const auth = new Auth({
      store,
      key: new TextEncoder().encode('k'.repeat(16) + 'K'.repeat(16)),
      tokenLifetimeMs: 1000,
    });
    await store.createUser({
      id: 'usr_recheck',
      username: 'rita',
      passwordHash: await hashPassword('pw-rita-1234'),
      role: 'user',
    });
    const { token } = await auth.login('rita', 'pw-rita-1234', '10.0.0.9');
    const principal = await auth.authenticate(token);
    const ticket = await auth.socketToken(principal);
    expect((await auth.authenticate(ticket.token)).loginId).toBe(principal.loginId);
    await auth.recheck(principal, ticket.token);
    await new Promise((r) => setTimeout(r, 1100));
    expect(await auth.recheck(principal, ticket.token).catch((e: { code: string }) => e.code)).toBe(
      'TOKEN_EXPIRED',
    );
    // The ticket's own 60 s do not extend the sign-in.
    expect(await auth.authenticate(ticket.token).catch((e: { code: string }) => e.code)).toBe(
      'TOKEN_EXPIRED',
    );
    await expect(auth.socketToken({ ...principal, via: 'api-token' })).rejects.toMatchObject({
      code: 'INVALID_STATE',
    });
    await store.close();
  });
});

describe('Auth principal cache', () => {
  it('reuses a principal for a few seconds, and forgets it at once on logout, token revoke and disable', async () => {
    const { Auth } = await import('./auth.ts');
    const { newApiToken, hashApiToken } = await import('../core/ids.ts');
    const store = await Store.open(await openDb({}));
    const auth = new Auth({
      store,
      key: new TextEncoder().encode('c'.repeat(16) + 'C'.repeat(16)),
      principalCacheMs: 60_000,
    });
    await store.createUser({
      id: 'usr_cache',
      username: 'cora',
      passwordHash: await hashPassword('pw-cora-1234'),
      role: 'user',
    });
    let reads = 0;
    const read = store.getLoginWithUser.bind(store);
    store.getLoginWithUser = (id: string) => {
      reads += 1;
      return read(id);
    };
    const { token } = await auth.login('cora', 'pw-cora-1234', '10.0.0.8');
    const principal = await auth.authenticate(token);
    for (let i = 0; i < 5; i += 1) expect(await auth.authenticate(token)).toEqual(principal);
    expect(reads).toBe(1);

    // Logout: the very next request with that sign-in fails, though the cache would still hold it.
    await auth.logout(principal);
    expect(await auth.authenticate(token).catch((e: { code: string }) => e.code)).toBe('TOKEN_REVOKED');

    // An API token revoked in the store stays cached until the router tells Auth to forget it.
    const secret = newApiToken();
    const tokenId = 'tok_cachecachecache1';
    await store.createApiToken({
      id: tokenId,
      userId: 'usr_cache',
      name: 't',
      tokenHash: hashApiToken(secret),
      expiresAt: null,
    });
    const viaToken = await auth.authenticate(secret);
    await store.revokeApiToken('usr_cache', tokenId);
    expect(await auth.authenticate(secret)).toEqual(viaToken);
    auth.forgetApiToken(tokenId);
    expect(await auth.authenticate(secret).catch((e: { code: string }) => e.code)).toBe('TOKEN_REVOKED');

    // Disable: every cached principal of the user goes.
    const again = (await auth.login('cora', 'pw-cora-1234', '10.0.0.8')).token;
    await auth.authenticate(again);
    await store.disableUser('usr_cache');
    auth.forgetUser('usr_cache');
    expect(await auth.authenticate(again).catch((e: { code: string }) => e.code)).toBe('TOKEN_REVOKED');
    await store.close();
  });
});
