import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { openTestDb, postgresSkipReason, type TestDb } from '../testing/databases.ts';
import { migrate } from './migrations.ts';
import { type NewSession, Store } from './store.ts';

const resources = {
  memoryBytes: 2 ** 30,
  cpus: 1,
  pids: 512,
  diskBytes: 2 ** 31,
  inodes: 200_000,
  tmpBytes: 2 ** 28,
};

function newSession(ownerId: string): NewSession {
  return {
    id: newId('ses_'),
    ownerId,
    backend: 'docker',
    image: 'studio-sandbox:latest',
    resources,
    instanceId: 'test',
  };
}

const skipPostgres = postgresSkipReason();

for (const kind of ['pglite', 'postgres'] as const) {
  const skip = kind === 'postgres' ? skipPostgres : undefined;
  describe.skipIf(skip !== undefined)(`Store on ${kind}${skip ? ` (skipped: ${skip})` : ''}`, () => {
    let t: TestDb;
    let store: Store;
    let alice: string;

    beforeEach(async () => {
      t = await openTestDb(kind);
      store = await Store.open(t.db);
      alice = (
        await store.createUser({ id: newId('usr_'), username: 'alice', passwordHash: 'x', role: 'user' })
      ).id;
    });
    afterEach(async () => {
      await t.dispose();
    });

    it('runs migrations once and records them', async () => {
      expect(await migrate(t.db)).toEqual([]);
      const rows = await t.db.query<{ version: number }>('SELECT version FROM migrations ORDER BY version');
      expect(rows.map((r) => r.version)).toEqual([1, 2, 3]);
    });

    it('refuses a database newer than the code', async () => {
      await t.db.query(`INSERT INTO migrations (version, name) VALUES (999, 'future')`);
      await expect(migrate(t.db)).rejects.toThrow(/newer than this API/);
    });

    it('keeps usernames unique with a clear code', async () => {
      const again = store.createUser({
        id: newId('usr_'),
        username: 'alice',
        passwordHash: 'y',
        role: 'user',
      });
      await expect(again).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    });

    it('holds the live-session limit under 50 concurrent creates: exactly 5 live', async () => {
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, () => store.reserveSession(newSession(alice), 5)),
      );
      const ok = results.filter((r) => r.status === 'fulfilled');
      const refused = results.filter(
        (r) => r.status === 'rejected' && r.reason instanceof AppError && r.reason.code === 'SESSION_LIMIT',
      );
      expect(ok).toHaveLength(5);
      expect(refused).toHaveLength(45);
      expect(await store.countLiveSessions(alice)).toBe(5);
    });

    it('counts stopped sessions as live and frees a slot on destroy or failure', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await store.reserveSession(newSession(alice), 5)).id);
      await store.transitionSession(ids[0] as string, ['creating'], 'running', { sandboxId: 'sbx-1' });
      await store.transitionSession(ids[0] as string, ['running'], 'stopped');
      await expect(store.reserveSession(newSession(alice), 5)).rejects.toMatchObject({
        code: 'SESSION_LIMIT',
      });
      await store.transitionSession(ids[1] as string, ['creating'], 'failed', { failureReason: 'boom' });
      await store.reserveSession(newSession(alice), 5);
      await store.transitionSession(ids[2] as string, ['creating'], 'destroyed');
      await store.reserveSession(newSession(alice), 5);
      expect(await store.countLiveSessions(alice)).toBe(5);
    });

    it('moves states by compare-and-set only', async () => {
      const s = await store.reserveSession(newSession(alice), 5);
      const [a, b] = await Promise.all([
        store.transitionSession(s.id, ['creating'], 'running', { sandboxId: 'sbx-a' }),
        store.transitionSession(s.id, ['creating'], 'failed', { failureReason: 'x' }),
      ]);
      expect([a, b].filter(Boolean)).toHaveLength(1);
      const failed = await store.transitionSession(s.id, ['running', 'creating'], 'failed', {
        failureReason: 'why',
      });
      const now = failed ?? (await store.getSession(alice, s.id));
      expect(now?.state === 'failed' ? now.failureReason : 'why').toBe('why');
      const gone = await store.transitionSession(
        s.id,
        ['running', 'stopped', 'failed', 'creating'],
        'destroyed',
      );
      expect(gone?.state).toBe('destroyed');
      expect(gone?.destroyedAt).toBeInstanceOf(Date);
      expect(gone?.failureReason).toBeNull();
    });

    it('scopes sessions to their owner', async () => {
      const bob = (
        await store.createUser({ id: newId('usr_'), username: 'bob', passwordHash: 'x', role: 'user' })
      ).id;
      const s = await store.reserveSession(newSession(alice), 5);
      expect(await store.getSession(bob, s.id)).toBeUndefined();
      expect((await store.getSession(alice, s.id))?.resources).toEqual(resources);
      expect(await store.listSessions(bob)).toEqual([]);
      expect((await store.listSessions(alice)).map((x) => x.id)).toEqual([s.id]);
    });

    it('refuses sessions for a disabled user, and disabling revokes logins and tokens', async () => {
      await store.createLogin({ id: newId('ses_'), userId: alice, expiresAt: new Date(Date.now() + 60_000) });
      const token = await store.createApiToken({
        id: newId('tok_'),
        userId: alice,
        name: 'ci',
        tokenHash: 'h1',
        expiresAt: null,
      });
      await store.disableUser(alice);
      expect((await store.findApiTokenByHash('h1'))?.revokedAt).toBeInstanceOf(Date);
      expect(token.revokedAt).toBeNull();
      await expect(store.reserveSession(newSession(alice), 5)).rejects.toMatchObject({
        code: 'UNAUTHENTICATED',
      });
    });

    it('revokes only the owner’s tokens', async () => {
      const bob = (
        await store.createUser({ id: newId('usr_'), username: 'bob', passwordHash: 'x', role: 'user' })
      ).id;
      const t1 = await store.createApiToken({
        id: newId('tok_'),
        userId: alice,
        name: 'a',
        tokenHash: 'h2',
        expiresAt: null,
      });
      expect(await store.revokeApiToken(bob, t1.id)).toBe(false);
      expect(await store.revokeApiToken(alice, t1.id)).toBe(true);
      expect(await store.revokeApiToken(alice, t1.id)).toBe(false);
    });

    it('writes and lists audit events', async () => {
      await store.audit({
        action: 'auth.login',
        outcome: 'failure',
        target: 'alice',
        ip: '127.0.0.1',
        details: { code: 'X' },
      });
      const [event] = await store.listAudit({ action: 'auth.login' });
      expect(event).toMatchObject({
        action: 'auth.login',
        outcome: 'failure',
        target: 'alice',
        details: { code: 'X' },
      });
    });
  });
}
