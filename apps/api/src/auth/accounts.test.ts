import { createStudioClient, type StudioClient } from '@studio/client';
import { createRateLimiter } from '@studio/policy';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, codeOf, startTestApi, type TestApi } from '../testing/api-fixture.ts';
import { FakeBackend } from '../testing/fake-backend.ts';

// Accounts over real HTTP (issue 22): changing your own password, an administrator's reset (and the
// must-change gate it sets), roles, enabling a disabled user. Every change is audited.

describe('accounts', () => {
  let t: TestApi;
  let admin: StudioClient;
  let adminId: string;
  const client = (token: string) => createStudioClient({ url: t.url, token });
  const signIn = async (username: string, password: string) => client(await t.login(username, password));
  const createUser = async (username: string, password: string) =>
    (await admin.users.create.mutate({ username, password })).id;
  const audit = async (action: string) => t.app.deps.store.listAudit({ action });

  beforeAll(async () => {
    t = await startTestApi({
      backends: [new FakeBackend()],
      loginLimiter: createRateLimiter({ limit: 5, windowMs: 60_000 }),
    });
    admin = await signIn('admin', ADMIN_PASSWORD);
    adminId = (await admin.auth.me.query()).id;
  });
  afterAll(async () => {
    await t?.close();
  });

  describe('auth.changePassword', () => {
    it('checks the current password, keeps this sign-in and API tokens, revokes the other sign-ins', async () => {
      const userId = await createUser('alice', 'alice-password-1');
      const here = await signIn('alice', 'alice-password-1');
      const elsewhere = await signIn('alice', 'alice-password-1');
      const { token } = await here.tokens.create.mutate({ name: 'ci' });

      expect(
        await codeOf(
          here.auth.changePassword.mutate({ currentPassword: 'not-it', newPassword: 'alice-password-2' }),
        ),
      ).toBe('INVALID_CREDENTIALS');
      expect(
        await codeOf(
          here.auth.changePassword.mutate({ currentPassword: 'alice-password-1', newPassword: 'short' }),
        ),
      ).toBe('INPUT_INVALID');
      expect(
        await codeOf(
          here.auth.changePassword.mutate({
            currentPassword: 'alice-password-1',
            newPassword: 'alice-password-1',
          }),
        ),
      ).toBe('INPUT_INVALID');

      await here.auth.changePassword.mutate({
        currentPassword: 'alice-password-1',
        newPassword: 'alice-password-2',
      });
      expect(await here.auth.me.query()).toMatchObject({ username: 'alice', mustChangePassword: false });
      expect(await codeOf(elsewhere.auth.me.query())).toBe('TOKEN_REVOKED');
      expect(await client(token).auth.me.query()).toMatchObject({ username: 'alice', via: 'api-token' });
      const old = await t.call('mutation', 'auth.login', { username: 'alice', password: 'alice-password-1' });
      expect(old.body.error?.data.studioCode).toBe('INVALID_CREDENTIALS');
      await signIn('alice', 'alice-password-2');

      const rows = (await audit('user.password_change')).filter((e) => e.target === userId);
      // Newest first; the too-short one was refused by the input schema before any check, so not a guess.
      expect(rows.map((e) => [e.outcome, e.details])).toEqual([
        ['success', {}],
        ['failure', { code: 'INPUT_INVALID' }],
        ['failure', { code: 'INVALID_CREDENTIALS' }],
      ]);
    });

    it('guesses of the current password count against the login limits', async () => {
      await createUser('guesser', 'guesser-password');
      const c = await signIn('guesser', 'guesser-password');
      const codes: string[] = [];
      for (let i = 0; i < 6; i++) {
        codes.push(
          await codeOf(
            c.auth.changePassword.mutate({ currentPassword: `guess-${i}`, newPassword: 'a-new-password' }),
          ),
        );
      }
      expect(codes.slice(0, 5)).toEqual(Array(5).fill('INVALID_CREDENTIALS'));
      expect(codes[5]).toBe('RATE_LIMITED');
      // The same limit holds the login form: the right password now waits too.
      const login = await t.call('mutation', 'auth.login', {
        username: 'guesser',
        password: 'guesser-password',
      });
      expect(login.body.error?.data.studioCode).toBe('RATE_LIMITED');
    });

    it('is refused to API tokens: a password belongs to a sign-in', async () => {
      const { token } = await admin.tokens.create.mutate({ name: 'x' });
      expect(
        await codeOf(
          client(token).auth.changePassword.mutate({
            currentPassword: ADMIN_PASSWORD,
            newPassword: 'whatever-new-1',
          }),
        ),
      ).toBe('INVALID_STATE');
    });
  });

  describe('users.resetPassword and the must-change gate', () => {
    it('revokes the sign-ins; the next sign-in may only change the password; tokens keep working', async () => {
      const bobId = await createUser('bob', 'bob-password-12');
      const before = await signIn('bob', 'bob-password-12');
      const { token } = await before.tokens.create.mutate({ name: 'agent', agent: true });

      const reset = await admin.users.resetPassword.mutate({ userId: bobId, password: 'temporary-pass-1' });
      expect(reset).toMatchObject({ id: bobId, mustChangePassword: true });
      expect(await codeOf(before.auth.me.query())).toBe('TOKEN_REVOKED');
      // API tokens are not the password the administrator knows: unaffected.
      expect(await client(token).sessions.list.query()).toEqual([]);
      expect(await client(token).auth.me.query()).toMatchObject({
        via: 'api-token',
        mustChangePassword: true,
      });

      const login = await t.call('mutation', 'auth.login', { username: 'bob', password: 'temporary-pass-1' });
      expect(login.body.result?.data).toMatchObject({ user: { username: 'bob', mustChangePassword: true } });
      const bobToken = (login.body.result?.data as { token: string } | undefined)?.token ?? '';
      const bob = client(bobToken);
      expect(await bob.auth.me.query()).toMatchObject({ username: 'bob', mustChangePassword: true });
      for (const refused of [
        () => bob.sessions.list.query(),
        () => bob.tokens.create.mutate({ name: 'sneaky' }),
        () => bob.auth.socketToken.mutate(),
      ]) {
        expect(await codeOf(refused())).toBe('PASSWORD_CHANGE_REQUIRED');
      }
      const raw = await t.call('query', 'sessions.list', undefined, {
        authorization: `Bearer ${bobToken}`,
      });
      expect(raw.status).toBe(403);
      expect(raw.body.error?.message).toMatch(/change it first/);

      await bob.auth.changePassword.mutate({
        currentPassword: 'temporary-pass-1',
        newPassword: 'bob-own-password',
      });
      expect(await bob.auth.me.query()).toMatchObject({ mustChangePassword: false });
      expect(await bob.sessions.list.query()).toEqual([]);
      expect((await admin.users.list.query()).find((u) => u.id === bobId)?.mustChangePassword).toBe(false);
      expect((await audit('user.password_reset'))[0]).toMatchObject({
        actorId: adminId,
        target: bobId,
        outcome: 'success',
      });
    });

    it('is for administrators, not on yourself, and names an unknown user', async () => {
      const carolId = await createUser('carol', 'carol-password-1');
      const carol = await signIn('carol', 'carol-password-1');
      expect(
        await codeOf(carol.users.resetPassword.mutate({ userId: carolId, password: 'carol-password-2' })),
      ).toBe('FORBIDDEN');
      expect(
        await codeOf(admin.users.resetPassword.mutate({ userId: adminId, password: 'admin-password-2' })),
      ).toBe('INVALID_STATE');
      expect(
        await codeOf(admin.users.resetPassword.mutate({ userId: 'usr_nobody', password: 'nobody-password' })),
      ).toBe('NOT_FOUND');
      expect(await codeOf(admin.users.resetPassword.mutate({ userId: carolId, password: 'short' }))).toBe(
        'INPUT_INVALID',
      );
    });
  });

  describe('users.setRole', () => {
    it('grants and takes back admin at once, never on yourself, audited with the role', async () => {
      const daveId = await createUser('dave', 'dave-password-12');
      const dave = await signIn('dave', 'dave-password-12');
      expect(await codeOf(dave.users.list.query())).toBe('FORBIDDEN');
      expect(await admin.users.setRole.mutate({ userId: daveId, role: 'admin' })).toMatchObject({
        role: 'admin',
      });
      expect((await dave.users.list.query()).length).toBeGreaterThan(1);
      expect(await codeOf(dave.users.setRole.mutate({ userId: daveId, role: 'user' }))).toBe('INVALID_STATE');
      await admin.users.setRole.mutate({ userId: daveId, role: 'user' });
      expect(await codeOf(dave.users.list.query())).toBe('FORBIDDEN');
      const bad = await t.call(
        'mutation',
        'users.setRole',
        { userId: daveId, role: 'root' },
        { authorization: `Bearer ${await t.login('admin', ADMIN_PASSWORD)}` },
      );
      expect(bad.body.error?.data.studioCode).toBe('INPUT_INVALID');
      expect((await audit('user.role_change')).map((e) => e.details)).toEqual([
        { role: 'user' },
        { role: 'admin' },
      ]);
    });
  });

  describe('users.enable', () => {
    it('lets a disabled user sign in again; what disabling revoked stays revoked', async () => {
      const erinId = await createUser('erin', 'erin-password-12');
      const erin = await signIn('erin', 'erin-password-12');
      const { token } = await erin.tokens.create.mutate({ name: 'ci' });
      expect(await admin.users.disable.mutate({ userId: erinId })).toMatchObject({ disabled: true });
      const refused = await t.call('mutation', 'auth.login', {
        username: 'erin',
        password: 'erin-password-12',
      });
      expect(refused.body.error?.data.studioCode).toBe('INVALID_CREDENTIALS');
      expect(await admin.users.enable.mutate({ userId: erinId })).toMatchObject({ disabled: false });
      expect(await (await signIn('erin', 'erin-password-12')).auth.me.query()).toMatchObject({
        username: 'erin',
      });
      expect(await codeOf(erin.auth.me.query())).toBe('TOKEN_REVOKED');
      expect(await codeOf(client(token).auth.me.query())).toBe('TOKEN_REVOKED');
      expect((await audit('user.enable'))[0]).toMatchObject({ target: erinId, outcome: 'success' });
      expect(await codeOf(admin.users.enable.mutate({ userId: 'usr_nobody' }))).toBe('NOT_FOUND');
    });
  });
});
