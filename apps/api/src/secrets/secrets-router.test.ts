import { createStudioClient, type StudioClient } from '@studio/client';
import { sql } from '@studio/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, codeOf, startTestApi, type TestApi } from '../testing/api-fixture.ts';
import { FakeBackend } from '../testing/fake-backend.ts';

// The secrets API over real HTTP: values go in and never come out (responses, the store, the audit log), names
// are per owner, and sessions are given secrets by name.

const VALUE = 'sk-router-test-value-0123456789';

describe('secrets router', () => {
  let t: TestApi;
  let alice: StudioClient;
  let bob: StudioClient;

  beforeAll(async () => {
    t = await startTestApi({ backends: [new FakeBackend()] });
    const admin = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
    await admin.users.create.mutate({ username: 'alice', password: 'alice-password-1' });
    await admin.users.create.mutate({ username: 'bob', password: 'bob-password-12' });
    alice = createStudioClient({ url: t.url, token: await t.login('alice', 'alice-password-1') });
    bob = createStudioClient({ url: t.url, token: await t.login('bob', 'bob-password-12') });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('stores a secret and shows everything but its value', async () => {
    const created = await alice.secrets.create.mutate({
      name: 'API_KEY',
      value: VALUE,
      hosts: ['API.example.com', '*.example.org'],
      header: 'X-Api-Key: {{value}}',
    });
    expect(created).toMatchObject({
      name: 'API_KEY',
      hosts: ['*.example.org', 'api.example.com'],
      header: 'X-Api-Key: {{value}}',
    });
    expect(JSON.stringify(created)).not.toContain(VALUE);
    const listed = await alice.secrets.list.query();
    expect(listed.map((s) => s.name)).toEqual(['API_KEY']);
    expect(JSON.stringify(listed)).not.toContain(VALUE);
    expect(await bob.secrets.list.query()).toEqual([]);
  });

  it('keeps the value sealed in the store and out of the audit log', async () => {
    const db = t.app.deps.store.db;
    const rows = await db.orm.execute(sql`select sealed from secrets`);
    const text = JSON.stringify(rows);
    expect(text).toContain('v1.');
    expect(text).not.toContain(VALUE);
    const audit = await t.app.deps.store.listAudit({ limit: 1000 });
    expect(audit.some((a) => a.action === 'secret.create')).toBe(true);
    expect(JSON.stringify(audit)).not.toContain(VALUE);
  });

  it('refuses bad input with codes that name the fix', async () => {
    expect(
      await codeOf(alice.secrets.create.mutate({ name: 'lower', value: 'v', hosts: ['a.example.com'] })),
    ).toBe('SECRET_INVALID');
    expect(
      await codeOf(alice.secrets.create.mutate({ name: 'B', value: 'a\r\nX: 1', hosts: ['a.example.com'] })),
    ).toBe('SECRET_INVALID');
    expect(await codeOf(alice.secrets.create.mutate({ name: 'B', value: 'v', hosts: ['10.0.0.0/8'] }))).toBe(
      'SECRET_INVALID',
    );
    expect(
      await codeOf(
        alice.secrets.create.mutate({
          name: 'B',
          value: 'v',
          hosts: ['a.example.com'],
          header: 'Host: {{value}}',
        }),
      ),
    ).toBe('SECRET_INVALID');
    expect(
      await codeOf(alice.secrets.create.mutate({ name: 'API_KEY', value: 'v', hosts: ['a.example.com'] })),
    ).toBe('ALREADY_EXISTS');
  });

  it('rotates and deletes only the caller’s own secrets', async () => {
    expect(await codeOf(bob.secrets.rotate.mutate({ name: 'API_KEY', value: 'x' }))).toBe('NOT_FOUND');
    expect(await codeOf(bob.secrets.delete.mutate({ name: 'API_KEY' }))).toBe('NOT_FOUND');
    const rotated = await alice.secrets.rotate.mutate({ name: 'API_KEY', value: `${VALUE}-2` });
    expect(JSON.stringify(rotated)).not.toContain(VALUE);
    const sealed = (await t.app.deps.store.listSecrets(rotated.name === 'API_KEY' ? await aliceId() : ''))[0]
      ?.sealed;
    expect(t.app.deps.vault.open(await aliceId(), 'API_KEY', sealed ?? '')).toBe(`${VALUE}-2`);
  });

  it('gives a session secrets by name, and refuses a name the caller does not have', async () => {
    expect(
      await codeOf(alice.sessions.create.mutate({ image: 'studio-sandbox:latest', secrets: ['NOPE'] })),
    ).toBe('NOT_FOUND');
    expect(
      await codeOf(bob.sessions.create.mutate({ image: 'studio-sandbox:latest', secrets: ['API_KEY'] })),
    ).toBe('NOT_FOUND');
    const session = await alice.sessions.create.mutate({
      image: 'studio-sandbox:latest',
      secrets: ['API_KEY'],
    });
    expect(session.secrets).toEqual(['API_KEY']);
    await alice.sessions.destroy.mutate({ sessionId: session.id });
  });

  it('lets an agent token list secrets but not change them', async () => {
    const { token } = await alice.tokens.create.mutate({ name: 'agent', agent: true });
    const agent = createStudioClient({ url: t.url, token });
    expect((await agent.secrets.list.query()).map((s) => s.name)).toEqual(['API_KEY']);
    expect(await codeOf(agent.secrets.rotate.mutate({ name: 'API_KEY', value: 'mine' }))).toBe('FORBIDDEN');
    expect(await codeOf(agent.secrets.delete.mutate({ name: 'API_KEY' }))).toBe('FORBIDDEN');
    expect(
      await codeOf(agent.secrets.create.mutate({ name: 'OTHER', value: 'v', hosts: ['a.example.com'] })),
    ).toBe('FORBIDDEN');
  });

  it('refuses a secret past the limit with LIMIT_EXCEEDED naming the fix', async () => {
    const ownerId = (await bob.auth.me.query()).id;
    for (let i = 0; i < 100; i++) {
      await t.app.deps.store.createSecret(
        {
          id: `sec_fill${i}`,
          ownerId,
          name: `FILL_${i}`,
          hosts: ['a.example.com'],
          header: 'A: {{value}}',
          sealed: 'x',
        },
        100,
      );
    }
    const refused = bob.secrets.create.mutate({ name: 'ONE_MORE', value: 'v', hosts: ['a.example.com'] });
    await expect(refused).rejects.toMatchObject({
      code: 'LIMIT_EXCEEDED',
      message: /limit is 100.*secrets\.delete/,
    });
  });

  it('deletes a secret', async () => {
    expect(await alice.secrets.delete.mutate({ name: 'API_KEY' })).toEqual({ ok: true });
    expect(await alice.secrets.list.query()).toEqual([]);
  });

  async function aliceId(): Promise<string> {
    return (await alice.auth.me.query()).id;
  }
});
