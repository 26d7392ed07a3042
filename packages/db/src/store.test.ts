import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { expect } from 'vitest';
import { isStoreError, StoreError } from './errors.ts';
import type { NewSession } from './store.ts';
import { describeEachDriver, storeTest, testEnv } from './testing/store-test.ts';

const env = testEnv(process.env);
const newId = (prefix: string) => `${prefix}${randomBytes(8).toString('hex')}`;

const resources = {
  memoryBytes: 2 ** 30,
  cpus: 1,
  pids: 512,
  diskBytes: 2 ** 31,
  inodes: 200_000,
  tmpBytes: 2 ** 28,
};

/** A template to store (its build not yet run). */
const template = (ownerId: string, name: string, shared = false) => ({
  id: newId('tpl_'),
  ownerId,
  name,
  shared,
  spec: { debian: ['jq'] },
});

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

// Every test below has a user `alice` in a clean database.
const test = storeTest.extend(
  'alice',
  async ({ store }) =>
    (await store.createUser({ id: newId('usr_'), username: 'alice', passwordHash: 'x', role: 'user' })).id,
);

describeEachDriver('Store', env, test, () => {
  test('keeps E2B records: put replaces, deadlines come due soonest first, delete forgets', async ({
    store,
    alice,
  }) => {
    const a = await store.reserveSession(newSession(alice), 5);
    const b = await store.reserveSession(newSession(alice), 5);
    const base = {
      ownerId: alice,
      tokenId: null,
      envsSealed: null,
      onTimeout: 'kill' as const,
      publicTraffic: true,
      origin: 'e2b' as const,
    };
    await store.putE2bSandbox({
      ...base,
      sessionId: a.id,
      metadata: { k: 'v' },
      tokenSealed: 't1',
      endsAt: null,
    });
    await store.putE2bSandbox({
      ...base,
      sessionId: a.id,
      metadata: { k: 'w' },
      tokenSealed: 't2',
      endsAt: new Date(2000),
    });
    await store.putE2bSandbox({
      ...base,
      sessionId: b.id,
      metadata: {},
      tokenSealed: 't3',
      endsAt: new Date(1000),
    });
    expect(await store.getE2bSandbox(a.id)).toMatchObject({ metadata: { k: 'w' }, tokenSealed: 't2' });
    expect((await store.listE2bSandboxes(alice)).map((r) => r.sessionId).sort()).toEqual([a.id, b.id].sort());
    expect((await store.dueE2bSandboxes(new Date(1500))).map((r) => r.sessionId)).toEqual([b.id]);
    expect((await store.dueE2bSandboxes(new Date(3000))).map((r) => r.sessionId)).toEqual([b.id, a.id]);
    // A node keeps only the deadlines of sessions it runs (instance `test` here).
    expect((await store.dueE2bSandboxes(new Date(3000), 100, 'test')).length).toBe(2);
    expect(await store.dueE2bSandboxes(new Date(3000), 100, 'another-node')).toEqual([]);
    expect(await store.setE2bDeadline(b.id, null)).toBe(true);
    expect((await store.dueE2bSandboxes(new Date(3000))).map((r) => r.sessionId)).toEqual([a.id]);
    await store.deleteE2bSandbox(a.id);
    expect(await store.getE2bSandbox(a.id)).toBeUndefined();
    // A session ended some other way (the IDE destroyed it): its record goes at the next clean-up.
    expect(await store.deleteEndedE2bSandboxes()).toBe(0);
    await store.transitionSession(b.id, ['creating'], 'destroyed');
    expect(await store.deleteEndedE2bSandboxes()).toBe(1);
    expect(await store.getE2bSandbox(b.id)).toBeUndefined();
    expect(await store.setE2bDeadline(a.id, new Date())).toBe(false);
  });

  test('keeps usernames unique with a clear code', async ({ store }) => {
    await store.createUser({ id: newId('usr_'), username: 'bob', passwordHash: 'x', role: 'user' });
    const again = store.createUser({ id: newId('usr_'), username: 'bob', passwordHash: 'y', role: 'user' });
    const error = await again.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreError);
    expect(isStoreError(error, 'CONFLICT')).toBe(true);
    expect((error as Error).message).toBe('username bob is taken; choose another');
  });

  test('holds the live-session limit under 50 concurrent creates: exactly 5 live', async ({
    store,
    alice,
  }) => {
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, () => store.reserveSession(newSession(alice), 5)),
    );
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r) => r.status === 'rejected' && isStoreError(r.reason, 'SESSION_LIMIT'));
    expect(ok).toHaveLength(5);
    expect(refused).toHaveLength(45);
    expect(await store.countLiveSessions(alice)).toBe(5);
  });

  test("keeps a session's network settings: none by default, replaced only for its owner while live", async ({
    store,
    alice,
  }) => {
    const created = await store.reserveSession(newSession(alice), 5);
    expect(created.network).toEqual({ mode: 'none', allow: [] });
    const allow = { mode: 'allowlist' as const, allow: ['registry.npmjs.org', '*.pypi.org:443'] };
    expect((await store.setSessionNetwork(alice, created.id, allow))?.network).toEqual(allow);
    expect((await store.getSessionById(created.id))?.network).toEqual(allow);
    expect(
      await store.setSessionNetwork('usr_someone_else', created.id, { mode: 'none', allow: [] }),
    ).toBeUndefined();
    await store.transitionSession(created.id, ['creating'], 'destroyed');
    expect(await store.setSessionNetwork(alice, created.id, { mode: 'none', allow: [] })).toBeUndefined();
    const given = await store.reserveSession({ ...newSession(alice), network: allow }, 5);
    expect(given.network).toEqual(allow);
  });

  test('stores secrets per owner: unique names, a limit, rotate, delete, by name', async ({
    store,
    alice,
  }) => {
    const secret = (name: string) => ({
      id: `sec_${name}`,
      ownerId: alice,
      name,
      hosts: ['api.example.com'],
      header: 'Authorization: Bearer {{value}}',
      sealed: `sealed-${name}`,
    });
    await store.createSecret(secret('A'), 2);
    await expect(store.createSecret({ ...secret('A'), id: 'sec_other' }, 2)).rejects.toMatchObject({
      code: 'CONFLICT',
      message: /already have a secret named A; rotate it/,
    });
    await store.createSecret(secret('B'), 2);
    await expect(store.createSecret(secret('C'), 2)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    expect((await store.listSecrets(alice)).map((s) => s.name)).toEqual(['A', 'B']);
    expect((await store.listSecrets(alice, ['B', 'Z'])).map((s) => s.name)).toEqual(['B']);
    expect(await store.listSecrets(alice, [])).toEqual([]);
    expect(await store.listSecrets('usr_someone_else')).toEqual([]);
    expect((await store.rotateSecret(alice, 'A', 'sealed-2'))?.sealed).toBe('sealed-2');
    expect(await store.rotateSecret('usr_someone_else', 'A', 'x')).toBeUndefined();
    expect(await store.deleteSecret('usr_someone_else', 'A')).toBe(false);
    expect(await store.deleteSecret(alice, 'A')).toBe(true);
    expect(await store.deleteSecret(alice, 'A')).toBe(false);
    const given = await store.reserveSession({ ...newSession(alice), secrets: ['B'] }, 5);
    expect(given.secrets).toEqual(['B']);
    expect((await store.reserveSession(newSession(alice), 5)).secrets).toEqual([]);
  });

  test('keeps templates: unique names per owner, a limit, shared ones for all, no delete while a session runs one', async ({
    store,
    alice,
  }) => {
    const bob = (
      await store.createUser({ id: newId('usr_'), username: 'bob', passwordHash: 'x', role: 'admin' })
    ).id;
    const mine = await store.createTemplate(template(alice, 'tools'), 2);
    expect(mine).toMatchObject({ state: 'building', digest: null, log: '', shared: false });
    await expect(store.createTemplate(template(alice, 'tools'), 2)).rejects.toMatchObject({
      code: 'CONFLICT',
      message: /already have a template named tools; rebuild it/,
    });
    await store.createTemplate(template(alice, 'other'), 2);
    await expect(store.createTemplate(template(alice, 'third'), 2)).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      message: /already have 2 templates \(the limit is 2\)/,
    });
    await store.createTemplate(template(bob, 'tools', true), 2);
    await store.createTemplate(template(bob, 'private'), 2);
    // Alice sees her own and Bob's shared one (hers first where the names are the same), never Bob's private one.
    const seen = await store.listTemplates(alice);
    expect(seen.map((t) => [t.name, t.ownerId === alice])).toEqual([
      ['other', true],
      ['tools', true],
      ['tools', false],
    ]);
    // A second build cannot start while one runs; a finished one records its outcome.
    expect(await store.startTemplateBuild(mine.id, ['ready', 'failed'])).toBeUndefined();
    const done = await store.updateTemplate(mine.id, {
      state: 'ready',
      digest: 'a'.repeat(64),
      sizeBytes: 5 * 2 ** 32,
    });
    expect(done).toMatchObject({ state: 'ready', sizeBytes: 5 * 2 ** 32 });
    expect(await store.startTemplateBuild(mine.id, ['ready', 'failed'])).toMatchObject({ state: 'building' });
    // A live session holds its template; once destroyed, the template can go.
    const session = await store.reserveSession({ ...newSession(alice), templateId: mine.id }, 5);
    expect(session.templateId).toBe(mine.id);
    await expect(store.deleteTemplate(mine.id)).rejects.toMatchObject({
      code: 'CONFLICT',
      message: /used by 1 live session; destroy it first/,
    });
    expect(await store.imagesInUse()).toEqual(['studio-sandbox:latest']);
    await store.transitionSession(session.id, ['creating'], 'destroyed');
    expect(await store.deleteTemplate(mine.id)).toBe(true);
    expect(await store.deleteTemplate(mine.id)).toBe(false);
    expect(await store.getTemplate(mine.id)).toBeUndefined();
  });

  test('counts stopped sessions as live and frees a slot on destroy or failure', async ({ store, alice }) => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await store.reserveSession(newSession(alice), 5)).id);
    await store.transitionSession(ids[0] as string, ['creating'], 'running', { sandboxId: 'sbx-1' });
    await store.transitionSession(ids[0] as string, ['running'], 'stopped');
    await expect(store.reserveSession(newSession(alice), 5)).rejects.toMatchObject({
      code: 'SESSION_LIMIT',
      message: /already have 5 live sessions \(the limit is 5\)/,
    });
    await store.transitionSession(ids[1] as string, ['creating'], 'failed', { failureReason: 'boom' });
    await store.reserveSession(newSession(alice), 5);
    await store.transitionSession(ids[2] as string, ['creating'], 'destroyed');
    await store.reserveSession(newSession(alice), 5);
    expect(await store.countLiveSessions(alice)).toBe(5);
    expect((await store.listLiveSessions()).map((s) => s.state).sort()).toEqual([
      'creating',
      'creating',
      'creating',
      'creating',
      'stopped',
    ]);
  });

  test('moves states by compare-and-set only', async ({ store, alice }) => {
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
    expect(await store.transitionSession(s.id, [], 'running')).toBeUndefined();
  });

  test('keeps the sandbox id unless given, and lists failed sandboxes of this instance', async ({
    store,
    alice,
  }) => {
    const s = await store.reserveSession(newSession(alice), 5);
    await store.transitionSession(s.id, ['creating'], 'running', { sandboxId: 'sbx-1' });
    const failed = await store.transitionSession(s.id, ['running'], 'failed');
    expect(failed).toMatchObject({ sandboxId: 'sbx-1', failureReason: 'unknown failure' });
    expect(await store.listFailedSandboxIds('test')).toEqual(['sbx-1']);
    expect(await store.listFailedSandboxIds('other')).toEqual([]);
  });

  test('records a sandbox owner with its session in one step, moves pool members, forgets after destroy', async ({
    store,
    alice,
  }) => {
    const session = await store.reserveSession(newSession(alice), 5);
    const sandboxId = newId('sbx-');
    expect((await store.assignSandbox(sandboxId, session.id))?.sandboxId).toBe(sandboxId);
    expect(await store.listSandboxOwners('test')).toMatchObject([
      { id: sandboxId, backend: 'docker', instanceId: 'test', sessionId: session.id },
    ]);
    expect(await store.listSandboxOwners('other-instance')).toEqual([]);

    // A warm-pool member: recorded without a session (twice is fine), then given to a creating session.
    const pooled = newId('sbx-');
    await store.recordSandbox({ id: pooled, backend: 'docker', instanceId: 'test', sessionId: null });
    await store.recordSandbox({ id: pooled, backend: 'docker', instanceId: 'test', sessionId: null });
    const taker = await store.reserveSession(newSession(alice), 5);
    expect((await store.assignSandbox(pooled, taker.id))?.sandboxId).toBe(pooled);
    expect((await store.listSandboxOwners('test')).find((o) => o.id === pooled)?.sessionId).toBe(taker.id);

    // Only a session still being created takes one; otherwise nothing is written.
    await store.transitionSession(taker.id, ['creating'], 'destroying');
    const late = newId('sbx-');
    expect(await store.assignSandbox(late, taker.id)).toBeUndefined();
    expect((await store.getSessionById(taker.id))?.sandboxId).toBe(pooled);
    expect((await store.listSandboxOwners('test')).map((o) => o.id)).not.toContain(late);

    await store.forgetSandbox(pooled);
    expect((await store.listSandboxOwners('test')).map((o) => o.id)).toEqual([sandboxId]);
  });

  test('a destroying session is live: it counts against the limit until destroyed', async ({
    store,
    alice,
  }) => {
    const s = await store.reserveSession(newSession(alice), 1);
    expect(await store.transitionSession(s.id, ['creating'], 'destroying')).toMatchObject({
      state: 'destroying',
    });
    await expect(store.reserveSession(newSession(alice), 1)).rejects.toMatchObject({ code: 'SESSION_LIMIT' });
    expect((await store.listLiveSessions()).map((r) => r.id)).toContain(s.id);
    expect(await store.transitionSession(s.id, ['destroying'], 'destroyed')).toMatchObject({
      state: 'destroyed',
    });
    expect(await store.countLiveSessions(alice)).toBe(0);
  });

  test('scopes sessions to their owner', async ({ store, alice }) => {
    const bob = (
      await store.createUser({ id: newId('usr_'), username: 'bob', passwordHash: 'x', role: 'user' })
    ).id;
    const s = await store.reserveSession(newSession(alice), 5);
    expect(await store.getSession(bob, s.id)).toBeUndefined();
    expect((await store.getSession(alice, s.id))?.resources).toEqual(resources);
    expect(await store.listSessions(bob)).toEqual([]);
    expect((await store.listSessions(alice)).map((x) => x.id)).toEqual([s.id]);
    await store.transitionSession(s.id, ['creating'], 'destroyed');
    expect(await store.listSessions(alice)).toEqual([]);
    expect((await store.listSessions(alice, { includeEnded: true })).map((x) => x.id)).toEqual([s.id]);
    expect(await store.setSessionControl(bob, s.id, { loginId: 'l', name: 'bob' })).toBeUndefined();
  });

  test('sets and clears who holds control of a session', async ({ store, alice }) => {
    const s = await store.reserveSession(newSession(alice), 5);
    expect(s.control).toBeNull();
    const held = await store.setSessionControl(alice, s.id, { loginId: 'login-1', name: 'Alice' });
    expect(held?.control).toMatchObject({ loginId: 'login-1', name: 'Alice' });
    expect(held?.control?.since).toBeInstanceOf(Date);
    expect((await store.getSessionById(s.id))?.control?.loginId).toBe('login-1');
    expect((await store.setSessionControl(alice, s.id, null))?.control).toBeNull();
  });

  test('refuses sessions for a disabled user, and disabling revokes logins and tokens', async ({
    store,
    alice,
  }) => {
    const loginId = newId('lgn_');
    await store.createLogin({ id: loginId, userId: alice, expiresAt: new Date(Date.now() + 60_000) });
    const token = await store.createApiToken({
      id: newId('tok_'),
      userId: alice,
      name: 'ci',
      tokenHash: 'h1',
      expiresAt: null,
    });
    const disabled = await store.disableUser(alice);
    expect(disabled?.disabledAt).toBeInstanceOf(Date);
    expect((await store.findApiTokenByHash('h1'))?.revokedAt).toBeInstanceOf(Date);
    expect((await store.getLogin(loginId))?.revokedAt).toBeInstanceOf(Date);
    expect(token.revokedAt).toBeNull();
    await expect(store.reserveSession(newSession(alice), 5)).rejects.toMatchObject({
      code: 'OWNER_INACTIVE',
    });
    expect(await store.disableUser('usr_nobody')).toBeUndefined();
  });

  test('sets a password (revoking the other sign-ins, never tokens), a role, and enables a user', async ({
    store,
    alice,
  }) => {
    const expiresAt = new Date(Date.now() + 60_000);
    const [kept, other] = [newId('lgn_'), newId('lgn_')];
    await store.createLogin({ id: kept, userId: alice, expiresAt });
    await store.createLogin({ id: other, userId: alice, expiresAt });
    await store.createApiToken({
      id: newId('tok_'),
      userId: alice,
      name: 'ci',
      tokenHash: 'h2',
      expiresAt: null,
    });
    expect((await store.getUser(alice))?.mustChangePassword).toBe(false);

    const changed = await store.setPassword(alice, {
      passwordHash: 'new',
      mustChangePassword: false,
      keepLoginId: kept,
    });
    expect(changed).toMatchObject({ passwordHash: 'new', mustChangePassword: false });
    expect((await store.getLogin(kept))?.revokedAt).toBeNull();
    expect((await store.getLogin(other))?.revokedAt).toBeInstanceOf(Date);
    expect((await store.findApiTokenByHash('h2'))?.revokedAt).toBeNull();

    // An administrator's reset: every sign-in goes, and the next one must change the password.
    const reset = await store.setPassword(alice, { passwordHash: 'reset', mustChangePassword: true });
    expect(reset?.mustChangePassword).toBe(true);
    expect((await store.getLogin(kept))?.revokedAt).toBeInstanceOf(Date);
    expect(
      await store.setPassword('usr_nobody', { passwordHash: 'x', mustChangePassword: true }),
    ).toBeUndefined();

    expect((await store.setUserRole(alice, 'admin'))?.role).toBe('admin');
    expect(await store.setUserRole('usr_nobody', 'admin')).toBeUndefined();

    await store.disableUser(alice);
    expect((await store.enableUser(alice))?.disabledAt).toBeNull();
    // What disabling revoked stays revoked.
    expect((await store.findApiTokenByHash('h2'))?.revokedAt).toBeInstanceOf(Date);
    expect(await store.enableUser('usr_nobody')).toBeUndefined();
    const created = await store.createUser({
      id: newId('usr_'),
      username: 'carol',
      passwordHash: 'x',
      role: 'user',
      mustChangePassword: true,
    });
    expect(created.mustChangePassword).toBe(true);
  });

  test('reads a login or a token with its user in one query', async ({ store, alice }) => {
    const loginId = newId('lgn_');
    const expiresAt = new Date(Date.now() + 60_000);
    await store.createLogin({ id: loginId, userId: alice, expiresAt });
    const found = await store.getLoginWithUser(loginId);
    expect(found?.login).toMatchObject({ id: loginId, userId: alice, revokedAt: null });
    expect(found?.login.expiresAt.getTime()).toBe(expiresAt.getTime());
    expect(found?.user).toMatchObject({ id: alice, username: 'alice', role: 'user', disabledAt: null });
    await store.revokeLogin(loginId);
    expect((await store.getLoginWithUser(loginId))?.login.revokedAt).toBeInstanceOf(Date);
    expect(await store.getLoginWithUser('nope')).toBeUndefined();

    await store.createApiToken({
      id: newId('tok_'),
      userId: alice,
      name: 'agent',
      tokenHash: 'h-agent',
      expiresAt: null,
      agent: true,
    });
    const withUser = await store.findApiTokenWithUser('h-agent');
    expect(withUser?.token).toMatchObject({ name: 'agent', agent: true, lastUsedAt: null });
    expect(withUser?.user.username).toBe('alice');
    await store.touchApiToken(withUser?.token.id as string);
    expect((await store.findApiTokenByHash('h-agent'))?.lastUsedAt).toBeInstanceOf(Date);
    expect((await store.listApiTokens(alice)).map((t) => t.agent)).toEqual([true]);
  });

  test('revokes only the owner’s tokens', async ({ store, alice }) => {
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
    expect(t1.agent).toBe(false);
    expect(await store.revokeApiToken(bob, t1.id)).toBe(false);
    expect(await store.revokeApiToken(alice, t1.id)).toBe(true);
    expect(await store.revokeApiToken(alice, t1.id)).toBe(false);
  });

  test('lists users in creation order and counts them', async ({ store, alice }) => {
    await store.createUser({ id: newId('usr_'), username: 'bob', passwordHash: 'x', role: 'admin' });
    expect(await store.countUsers()).toBe(2);
    expect((await store.listUsers()).map((u) => u.username)).toEqual(['alice', 'bob']);
    expect((await store.getUserByUsername('bob'))?.role).toBe('admin');
    expect((await store.getUser(alice))?.username).toBe('alice');
    expect(await store.getUser('usr_nobody')).toBeUndefined();
  });

  test('writes and lists audit events, newest first', async ({ store }) => {
    await store.audit({
      action: 'auth.login',
      outcome: 'failure',
      target: 'alice',
      ip: '127.0.0.1',
      details: { code: 'X' },
    });
    await store.audit({ action: 'auth.login', outcome: 'success' });
    await store.audit({ action: 'session.create', outcome: 'denied' });
    const events = await store.listAudit({ action: 'auth.login' });
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({ outcome: 'success', target: null, details: {} });
    expect(events[1]).toMatchObject({
      action: 'auth.login',
      outcome: 'failure',
      target: 'alice',
      ip: '127.0.0.1',
      actorId: null,
      requestId: null,
      details: { code: 'X' },
    });
    expect(typeof events[1]?.id).toBe('string');
    expect(events[1]?.at).toBeInstanceOf(Date);
    expect(await store.listAudit({ limit: 1 })).toHaveLength(1);
  });

  test('keeps session events in order, pages back by id, only for the owner, bounded per session', async ({
    store,
    alice,
  }) => {
    const bob = (
      await store.createUser({ id: newId('usr_'), username: 'bob', passwordHash: 'x', role: 'user' })
    ).id;
    const a = await store.reserveSession(newSession(alice), 5);
    const b = await store.reserveSession(newSession(alice), 5);
    const actor = { kind: 'agent', userId: alice, name: 'alice' };
    const event = (sessionId: string, i: number) => ({
      sessionId,
      cursor: `ep-${i}`,
      at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)),
      actor: i % 2 === 0 ? actor : null,
      body: { type: 'exec.output', execId: 'exe_1', stream: 'stdout', data: `line ${i}\n`, truncated: false },
    });
    // One batch across two sessions, and an event of a session the store does not have (dropped, not refused).
    const batch = [
      ...Array.from({ length: 5 }, (_, i) => event(a.id, i + 1)),
      event('ses_gone0123456789abcdef', 1),
      event(b.id, 1),
    ];
    expect(await store.appendSessionEvents(batch, 10)).toBe(6);
    const newest = await store.listSessionEvents(alice, a.id, { limit: 3 });
    expect(newest.map((e) => e.cursor)).toEqual(['ep-5', 'ep-4', 'ep-3']);
    expect(newest[0]).toMatchObject({ sessionId: a.id, actor: null, body: { data: 'line 5\n' } });
    expect(newest[1]).toMatchObject({ actor });
    expect(newest[0]?.at.toISOString()).toBe('2026-01-01T00:00:05.000Z');
    expect(typeof newest[0]?.id).toBe('string');
    const older = await store.listSessionEvents(alice, a.id, { before: newest[2]?.id, limit: 3 });
    expect(older.map((e) => e.cursor)).toEqual(['ep-2', 'ep-1']);
    // Another owner sees nothing of it.
    expect(await store.listSessionEvents(bob, a.id)).toEqual([]);
    await expect(store.listSessionEvents(alice, a.id, { before: 'x' })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    // Past `keep` only the newest stay; the other session is untouched.
    await store.appendSessionEvents(
      Array.from({ length: 8 }, (_, i) => event(a.id, i + 6)),
      10,
    );
    const kept = await store.listSessionEvents(alice, a.id, { limit: 100 });
    expect(kept.map((e) => e.cursor)).toEqual(Array.from({ length: 10 }, (_, i) => `ep-${13 - i}`));
    expect(await store.listSessionEvents(alice, b.id)).toHaveLength(1);
    // Destroyed sessions' events go, by id or in a sweep; a session's row takes its events with it.
    expect(await store.deleteSessionEvents(b.id)).toBe(1);
    await store.appendSessionEvents([event(b.id, 2)], 10);
    await store.transitionSession(b.id, ['creating'], 'destroyed');
    expect(await store.deleteEndedSessionEvents()).toBe(1);
    expect(await store.listSessionEvents(alice, a.id)).toHaveLength(10);
    await store.db.orm.execute(sql`DELETE FROM sessions WHERE id = ${a.id}`);
    expect(await store.listSessionEvents(alice, a.id)).toEqual([]);
    const [left] = (
      (await store.db.orm.execute(sql`SELECT count(*)::int AS n FROM session_events`)) as unknown as {
        rows: { n: number }[];
      }
    ).rows;
    expect(left?.n).toBe(0);
    await expect(store.appendSessionEvents([event(a.id, 1)], 0)).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
  });

  test('a failed statement is a StoreError without the statement’s parameters', async ({ store, alice }) => {
    const hash = 'secret-hash-must-not-appear';
    await store.createApiToken({
      id: 'tok_same',
      userId: alice,
      name: 'a',
      tokenHash: hash,
      expiresAt: null,
    });
    const again = store.createApiToken({
      id: 'tok_same',
      userId: alice,
      name: 'b',
      tokenHash: 'h',
      expiresAt: null,
    });
    const error = await again.catch((e: unknown) => e);
    expect(isStoreError(error, 'QUERY_FAILED')).toBe(true);
    const { message } = error as Error;
    expect(message).toMatch(/duplicate key/);
    expect(message).not.toMatch(/Failed query|params/);
    expect(message).not.toContain(hash);
  });

  // ---------------------------------------------------------------------------------------- instances

  const claim = (holder: string, leaseMs = 30_000) => ({
    id: 'inst-1',
    holder,
    host: `host-${holder}`,
    pid: 1000 + holder.length,
    dataDir: `/data/${holder}`,
    leaseMs,
  });

  test('claims an instance id once: the same holder again, another holder refused with who holds it', async ({
    store,
  }) => {
    expect(await store.claimInstance(claim('a'))).toEqual({ ok: true });
    expect(await store.claimInstance(claim('a'))).toEqual({ ok: true });
    const lost = await store.claimInstance(claim('bb'));
    expect(lost).toMatchObject({ ok: false, holder: { host: 'host-a', pid: 1001, dataDir: '/data/a' } });
    expect(lost.ok === false && lost.holder.heartbeatAt).toBeInstanceOf(Date);
    expect(await store.claimInstance({ ...claim('bb'), id: 'inst-2' })).toEqual({ ok: true });
  });

  test('of 20 concurrent claims of one instance id exactly one wins', async ({ store }) => {
    const holders = Array.from({ length: 20 }, (_, i) => `holder-${i}`);
    const results = await Promise.all(holders.map((h) => store.claimInstance(claim(h))));
    const winners = holders.filter((_, i) => results[i]?.ok);
    expect(winners).toHaveLength(1);
    for (const r of results) {
      if (!r.ok) expect(r.holder.host).toBe(`host-${winners[0]}`);
    }
    expect(await store.renewInstance('inst-1', winners[0] as string)).toBe(true);
    const loser = holders.find((h) => h !== winners[0]) as string;
    expect(await store.renewInstance('inst-1', loser)).toBe(false);
  });

  test('takes over an expired lease; the old holder then cannot renew, and release frees the id', async ({
    store,
  }) => {
    expect(await store.claimInstance(claim('old'))).toEqual({ ok: true });
    expect((await store.claimInstance(claim('new', 60_000))).ok).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 60));
    // For the new claimant a heartbeat older than 50 ms is dead.
    expect(await store.claimInstance(claim('new', 50))).toEqual({ ok: true });
    expect(await store.renewInstance('inst-1', 'old')).toBe(false);
    await store.releaseInstance('inst-1', 'old'); // not the holder: no effect
    expect(await store.renewInstance('inst-1', 'new')).toBe(true);
    await store.releaseInstance('inst-1', 'new');
    expect(await store.renewInstance('inst-1', 'new')).toBe(false);
    expect(await store.claimInstance(claim('third'))).toEqual({ ok: true });
  });

  test('takes over at once from a holder named dead (its host and pid), not from another', async ({
    store,
  }) => {
    expect(await store.claimInstance(claim('old'))).toEqual({ ok: true });
    const other = { host: 'host-old', pid: 4242 };
    expect((await store.claimInstance({ ...claim('new'), replace: other })).ok).toBe(false);
    const dead = { host: 'host-old', pid: 1003 };
    expect(await store.claimInstance({ ...claim('new'), replace: dead })).toEqual({ ok: true });
    expect(await store.renewInstance('inst-1', 'old')).toBe(false);
  });

  test('refuses a lease that is not a positive duration', async ({ store }) => {
    await expect(store.claimInstance(claim('a', 0))).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(store.claimInstance(claim('a', Number.NaN))).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
  });

  test('keeps node services: reports renew, availability and draining stick, live sessions are counted', async ({
    store,
    db,
    alice,
  }) => {
    const capacity = {
      backends: ['docker'],
      templates: [],
      memoryTotalBytes: 8 * 2 ** 30,
      memoryFreeBytes: 6 * 2 ** 30,
      cpus: 2,
      load1: 0.5,
      maxSessions: null,
    };
    const report = (id: string, swarmNodeId: string | null) => ({
      id,
      url: `http://${id}:4100`,
      host: id,
      swarmNodeId,
      capacity,
    });
    await store.reportNode(report('node-a', 'swarm-a'));
    await store.reportNode(report('node-b', null));
    await store.reserveSession({ ...newSession(alice), instanceId: 'node-a' }, 5);
    await store.reserveSession({ ...newSession(alice), instanceId: 'node-a' }, 5);
    let [a, b] = await store.listNodes();
    expect(a).toMatchObject({
      id: 'node-a',
      availability: 'active',
      draining: false,
      liveSessions: 2,
      capacity,
    });
    expect(b).toMatchObject({ id: 'node-b', swarmNodeId: null, liveSessions: 0 });
    expect(a?.ageMs).toBeGreaterThanOrEqual(0);
    expect(a?.ageMs).toBeLessThan(60_000);

    expect(await store.setNodeAvailability('swarm-a', 'drain')).toBe(1);
    expect(await store.setNodeAvailability('swarm-a', 'drain')).toBe(0); // unchanged
    await store.setNodeDraining('node-b', true);
    await store.reportNode({ ...report('node-a', 'swarm-a'), capacity: { ...capacity, load1: 1.5 } });
    await store.reportNode(report('node-b', null));
    [a, b] = await store.listNodes();
    expect(a).toMatchObject({ availability: 'drain', capacity: { load1: 1.5 } }); // a report keeps Swarm's word
    expect(b?.draining).toBe(true); // a heartbeat does not undo a shutdown in progress
    await store.reportNode(report('node-b', null), { restarted: true });
    expect((await store.listNodes())[1]?.draining).toBe(false);

    // A node not heard from: its live sessions fail with the reason; others' are untouched.
    const lost = await store.reserveSession({ ...newSession(alice), instanceId: 'node-b' }, 5);
    await store.transitionSession(lost.id, ['creating'], 'running');
    expect(await store.failSessionsOfLostNodes(60_000)).toEqual([]);
    await store.reportNode(report('node-b', null)); // its last report, then silence
    await db.orm.execute(
      sql`UPDATE nodes SET reported_at = now() - interval '2 minutes' WHERE id = 'node-b'`,
    );
    const failed = await store.failSessionsOfLostNodes(30_000);
    expect(failed).toEqual([
      {
        sessionId: lost.id,
        nodeId: 'node-b',
        reason: expect.stringMatching(
          /^its node node-b stopped answering \(no report for over 30 s at .+ UTC\); destroy it/,
        ),
      },
    ]);
    expect(await store.getSessionById(lost.id)).toMatchObject({ state: 'failed' });
    expect(await store.failSessionsOfLostNodes(30_000)).toEqual([]); // once
    // Its template builds too (only a build's own node may otherwise fail it); node-a's build runs on.
    const lostBuild = await store.createTemplate({ ...template(alice, 'lost'), builderId: 'node-b' }, 5);
    const liveBuild = await store.createTemplate({ ...template(alice, 'live'), builderId: 'node-a' }, 5);
    expect(await store.failBuildsOfLostNodes(30_000)).toEqual([
      { templateId: lostBuild.id, nodeId: 'node-b' },
    ]);
    expect(await store.getTemplate(lostBuild.id)).toMatchObject({
      state: 'failed',
      failure: 'its build ran on node node-b, which stopped answering; run templates.build again',
    });
    expect((await store.getTemplate(liveBuild.id))?.state).toBe('building');
    expect(await store.failBuildsOfLostNodes(30_000)).toEqual([]);
    await expect(store.failBuildsOfLostNodes(0)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    expect((await store.listNodes())[0]?.liveSessions).toBe(2); // node-a's two from before
    // A node Swarm drained is given up sooner (its service was stopped on purpose), with that reason.
    const drained = await store.reserveSession({ ...newSession(alice), instanceId: 'node-a' }, 5);
    await store.transitionSession(drained.id, ['creating'], 'running');
    await db.orm.execute(
      sql`UPDATE nodes SET reported_at = now() - interval '15 seconds' WHERE id = 'node-a'`,
    );
    const gone = await store.failSessionsOfLostNodes(30_000, 10_000);
    expect(gone.map((g) => g.nodeId)).toEqual(['node-a', 'node-a', 'node-a']);
    expect(gone.find((g) => g.sessionId === drained.id)?.reason).toMatch(
      /^its node node-a was drained in Swarm/,
    );

    await store.removeNode('node-b');
    expect((await store.listNodes()).map((n) => n.id)).toEqual(['node-a']);
  });
});
