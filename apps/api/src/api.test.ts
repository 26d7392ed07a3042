import {
  createStudioClient,
  isStudioClientError,
  type StudioClient,
  StudioClientError,
} from '@studio/client';
import { IsolationError } from '@studio/isolation';
import { createRateLimiter, signSessionToken } from '@studio/policy';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_PASSWORD,
  codeOf,
  IDE,
  JWT_SECRET,
  startTestApi,
  type TestApi,
} from './testing/api-fixture.ts';
import { FakeBackend } from './testing/fake-backend.ts';

// The whole API over real HTTP with an in-memory backend: auth, tokens, users, ownership, limits, errors.
// The same flows against Docker, plus files and exec, are in api.docker.test.ts.

const key = new TextEncoder().encode(JWT_SECRET);
const IMAGE = 'studio-sandbox:latest';

const METRICS_TOKEN = 'metrics-token-for-tests-0123456789abcdef';

describe('API (fake backend)', () => {
  const backend = new FakeBackend();
  let t: TestApi;
  let adminToken: string;
  let admin: StudioClient;
  let alice: StudioClient;
  let aliceToken: string;

  beforeAll(async () => {
    t = await startTestApi({
      backends: [backend],
      createLimiter: createRateLimiter({ limit: 1000, windowMs: 60_000 }),
      loginLimiter: createRateLimiter({ limit: 10, windowMs: 60_000 }),
      env: { STUDIO_METRICS_TOKEN: METRICS_TOKEN },
    });
    adminToken = await t.login('admin', ADMIN_PASSWORD);
    admin = createStudioClient({ url: t.url, token: adminToken });
    await admin.users.create.mutate({ username: 'alice', password: 'alice-password-1' });
    await admin.users.create.mutate({ username: 'bob', password: 'bob-password-12' });
    aliceToken = await t.login('alice', 'alice-password-1');
    alice = createStudioClient({ url: t.url, token: aliceToken });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('serves health, readiness and metrics', async () => {
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${t.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      ok: true,
      store: true,
      backends: [{ name: 'docker', available: true }],
      degraded: false,
      readOnlyWorkspaces: 0,
    });
    // Metrics are not public: only for the bearer of STUDIO_METRICS_TOKEN (or on a listener of their own).
    const anonymous = await fetch(`${t.url}/metrics`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.text()).not.toContain('studio_http_requests_total');
    const wrong = await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(wrong.status).toBe(401);
    const metrics = await (
      await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })
    ).text();
    expect(metrics).toContain('studio_http_requests_total');
    expect(metrics).toContain('route="auth.login"');
  });

  it('reports not ready when no backend is available', async () => {
    backend.available_ = { ok: false, reason: 'daemon down' };
    try {
      const ready = await fetch(`${t.url}/readyz`);
      expect(ready.status).toBe(503);
      await expect(alice.sessions.create.mutate({ image: IMAGE })).rejects.toMatchObject({
        code: 'BACKEND_UNAVAILABLE',
      });
    } finally {
      backend.available_ = { ok: true };
    }
  });

  it('signs in with a JWT cookie (for the IDE only) and bearer token, and knows who is calling', async () => {
    const r = await t.call(
      'mutation',
      'auth.login',
      { username: 'Alice', password: 'alice-password-1' },
      IDE,
    );
    expect(r.status).toBe(200);
    const cookie = r.headers.get('set-cookie') ?? '';
    // 127.0.0.1 is a secure context: the prefixed, Secure, host-only cookie.
    expect(cookie).toMatch(
      /^__Host-studio_token=ey[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+; Secure$/,
    );
    expect(await alice.auth.me.query()).toMatchObject({ username: 'alice', role: 'user', via: 'login' });
    const viaCookie = await t.call('query', 'auth.me', undefined, {
      ...IDE,
      cookie: cookie.split(';')[0] as string,
    });
    expect(viaCookie.status).toBe(200);
    // Without the IDE's proof a sign-in gets its token, never a cookie (a form on another site cannot sign the
    // browser in as someone else).
    const api = await t.call('mutation', 'auth.login', { username: 'alice', password: 'alice-password-1' });
    expect(api.status).toBe(200);
    expect(api.headers.get('set-cookie')).toBeNull();
  });

  it('refuses the login cookie from a foreign origin, or without the IDE proof', async () => {
    const r = await t.call(
      'mutation',
      'auth.login',
      { username: 'alice', password: 'alice-password-1' },
      IDE,
    );
    const cookie = (r.headers.get('set-cookie') ?? '').split(';')[0] as string;
    const cross = await t.call('query', 'auth.me', undefined, {
      ...IDE,
      cookie,
      origin: 'https://evil.example',
    });
    expect(cross.status).toBe(403);
    expect(cross.body.error?.data.studioCode).toBe('ORIGIN_REFUSED');
    const bare = await t.call('query', 'auth.me', undefined, { cookie });
    expect(bare.status).toBe(403);
    expect(bare.body.error?.data.studioCode).toBe('ORIGIN_REFUSED');
  });

  it('answers a wrong password with INVALID_CREDENTIALS, the same as an unknown user, and audits it', async () => {
    const wrong = await t.call('mutation', 'auth.login', { username: 'bob', password: 'nope-nope-nope' });
    const unknown = await t.call('mutation', 'auth.login', {
      username: 'nobody',
      password: 'nope-nope-nope',
    });
    for (const r of [wrong, unknown]) {
      expect(r.status).toBe(401);
      expect(r.body.error?.data.studioCode).toBe('INVALID_CREDENTIALS');
      expect(r.body.error?.message).toBe('wrong username or password');
    }
    const events = await t.app.deps.store.listAudit({ action: 'auth.login' });
    expect(events.some((e) => e.outcome === 'failure' && e.target === 'bob')).toBe(true);
  });

  it('errors carry codes and a request id, never a stack', async () => {
    const r = await t.call(
      'query',
      'sessions.get',
      { sessionId: '../../etc' },
      { authorization: `Bearer ${aliceToken}` },
    );
    expect(r.status).toBe(400);
    expect(r.body.error?.data).toEqual({
      code: 'BAD_REQUEST',
      httpStatus: 400,
      studioCode: 'INPUT_INVALID',
      path: 'sessions.get',
      requestId: r.headers.get('x-request-id'),
    });
    expect(JSON.stringify(r.body)).not.toMatch(/stack|node_modules|\.ts:/);
  });

  describe('credentials', () => {
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
    const me = (token: string) => t.call('query', 'auth.me', undefined, bearer(token));

    it('refuses a missing credential', async () => {
      const r = await t.call('query', 'auth.me', undefined);
      expect(r.status).toBe(401);
      expect(r.body.error?.data.studioCode).toBe('UNAUTHENTICATED');
    });

    it('refuses a JWT signed with another key (forged)', async () => {
      const forged = await signSessionToken(
        { userId: 'usr_x', sessionId: 'ses_aaaaaaaaaaaaaaaaaaaa', projectPath: '' },
        new TextEncoder().encode('another-secret-0123456789-abcdefghijklmnop'),
      );
      const r = await me(forged);
      expect(r.status).toBe(401);
      expect(r.body.error?.data.studioCode).toBe('TOKEN_INVALID');
    });

    it('refuses an expired JWT', async () => {
      const me0 = await alice.auth.me.query();
      const old = await signSessionToken(
        { userId: me0.id, sessionId: 'ses_aaaaaaaaaaaaaaaaaaaa', projectPath: '' },
        key,
        { now: new Date(Date.now() - 3 * 3600_000), lifetimeMs: 3600_000 },
      );
      const r = await me(old);
      expect(r.status).toBe(401);
      expect(r.body.error?.data.studioCode).toBe('TOKEN_EXPIRED');
    });

    it('refuses a tampered JWT (payload changed, signature kept)', async () => {
      const [h, p, s] = aliceToken.split('.') as [string, string, string];
      const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
      const bobId = (await admin.users.list.query()).find((u) => u.username === 'bob')?.id;
      const tampered = `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: bobId })).toString('base64url')}.${s}`;
      const r = await me(tampered);
      expect(r.status).toBe(401);
      expect(r.body.error?.data.studioCode).toBe('TOKEN_INVALID');
    });

    it('refuses alg none', async () => {
      const [, p] = aliceToken.split('.') as [string, string];
      const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${p}.`;
      expect((await me(none)).status).toBe(401);
    });

    it('refuses a validly signed JWT for a sign-in the server never made', async () => {
      const me0 = await alice.auth.me.query();
      const token = await signSessionToken(
        { userId: me0.id, sessionId: 'ses_bbbbbbbbbbbbbbbbbbbb', projectPath: '' },
        key,
      );
      const r = await me(token);
      expect(r.status).toBe(401);
      expect(r.body.error?.data.studioCode).toBe('UNAUTHENTICATED');
    });

    it('logout revokes the JWT server-side', async () => {
      const token = await t.login('alice', 'alice-password-1');
      const c = createStudioClient({ url: t.url, token });
      await c.auth.logout.mutate();
      expect(await codeOf(c.auth.me.query())).toBe('TOKEN_REVOKED');
    });

    it('API tokens: shown once, listed without secret, revocable', async () => {
      const created = await alice.tokens.create.mutate({ name: 'ci', expiresInDays: 30 });
      expect(created.token).toMatch(/^sst_[A-Za-z0-9_-]{43}$/);
      const viaToken = createStudioClient({ url: t.url, token: created.token });
      expect(await viaToken.auth.me.query()).toMatchObject({ username: 'alice', via: 'api-token' });
      const listed = await alice.tokens.list.query();
      expect(listed.find((x) => x.id === created.id)).toBeDefined();
      expect(JSON.stringify(listed)).not.toContain(created.token);
      // Bob cannot revoke Alice's token.
      const bob = createStudioClient({ url: t.url, token: await t.login('bob', 'bob-password-12') });
      expect(await codeOf(bob.tokens.revoke.mutate({ id: created.id }))).toBe('NOT_FOUND');
      await alice.tokens.revoke.mutate({ id: created.id });
      const r = await me(created.token);
      expect(r.status).toBe(401);
      expect(r.body.error?.data.studioCode).toBe('TOKEN_REVOKED');
      expect(await codeOf(viaToken.auth.me.query())).toBe('TOKEN_REVOKED');
      const audit = await t.app.deps.store.listAudit();
      expect(audit.some((e) => e.action === 'token.revoke' && e.target === created.id)).toBe(true);
      expect(audit.some((e) => e.action === 'token.create' && e.target === created.id)).toBe(true);
    });

    it('refuses an unknown API token and an over-long credential', async () => {
      expect((await me(`sst_${'A'.repeat(43)}`)).body.error?.data.studioCode).toBe('UNAUTHENTICATED');
      expect((await me('x'.repeat(5000))).status).toBe(401);
    });
  });

  describe('users (admin only)', () => {
    it('refuses non-admins with FORBIDDEN and audits it', async () => {
      expect(await codeOf(alice.users.list.query())).toBe('FORBIDDEN');
      expect(
        await codeOf(alice.users.create.mutate({ username: 'mallory', password: 'mallory-password' })),
      ).toBe('FORBIDDEN');
      const audit = await t.app.deps.store.listAudit({ action: 'admin.access' });
      expect(audit[0]).toMatchObject({ outcome: 'denied', target: 'users.create' });
    });

    it('refuses a role field (no mass assignment), duplicates and short passwords', async () => {
      const raw = await t.call(
        'mutation',
        'users.create',
        { username: 'eve', password: 'eve-password-12', role: 'admin' },
        { authorization: `Bearer ${adminToken}` },
      );
      expect(raw.status).toBe(400);
      expect(
        await codeOf(admin.users.create.mutate({ username: 'alice', password: 'another-password' })),
      ).toBe('ALREADY_EXISTS');
      expect(await codeOf(admin.users.create.mutate({ username: 'carol', password: 'short' }))).toBe(
        'INPUT_INVALID',
      );
    });

    it('disabling a user cuts off its sign-ins and tokens at once', async () => {
      const dave = await admin.users.create.mutate({ username: 'dave', password: 'dave-password-1' });
      const daveClient = createStudioClient({ url: t.url, token: await t.login('dave', 'dave-password-1') });
      const { token } = await daveClient.tokens.create.mutate({ name: 'x' });
      const daveSession = await daveClient.sessions.create.mutate({ image: IMAGE });
      await admin.users.disable.mutate({ userId: dave.id });
      expect((await t.app.deps.store.getSession(dave.id, daveSession.id))?.state).toBe('stopped');
      expect(await codeOf(daveClient.auth.me.query())).toBe('TOKEN_REVOKED');
      expect(await codeOf(createStudioClient({ url: t.url, token }).auth.me.query())).toBe('TOKEN_REVOKED');
      const relogin = await t.call('mutation', 'auth.login', {
        username: 'dave',
        password: 'dave-password-1',
      });
      expect(relogin.body.error?.data.studioCode).toBe('INVALID_CREDENTIALS');
      const me0 = await admin.auth.me.query();
      expect(await codeOf(admin.users.disable.mutate({ userId: me0.id }))).toBe('INVALID_STATE');
    });
  });

  describe('sessions', () => {
    it('creates, stops, starts, reports stats and destroys', async () => {
      const s = await alice.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 256 } });
      expect(s).toMatchObject({ state: 'running', backend: 'docker', image: IMAGE });
      expect(s.resources.memoryBytes).toBe(256 * 1024 * 1024);
      const sandbox = [...backend.sandboxes.values()].find((x) => x.spec.labels?.['studio.session'] === s.id);
      expect(sandbox?.spec.labels).toMatchObject({
        'studio.session': s.id,
        'studio.owner': (await alice.auth.me.query()).id,
      });
      expect((await alice.sessions.stop.mutate({ sessionId: s.id })).state).toBe('stopped');
      expect(await codeOf(alice.exec.run.mutate({ sessionId: s.id, command: ['true'] }))).toBe(
        'INVALID_STATE',
      );
      expect((await alice.sessions.stats.query({ sessionId: s.id })).stats).toBeNull();
      expect((await alice.sessions.start.mutate({ sessionId: s.id })).state).toBe('running');
      expect((await alice.sessions.stats.query({ sessionId: s.id })).stats?.memoryLimitBytes).toBe(
        256 * 1024 * 1024,
      );
      expect((await alice.exec.run.mutate({ sessionId: s.id, command: ['echo', 'hi'] })).stdout).toBe('hi\n');
      expect((await alice.sessions.destroy.mutate({ sessionId: s.id })).state).toBe('destroyed');
      expect(sandbox && backend.sandboxes.has(sandbox.id)).toBe(false);
      expect((await alice.sessions.destroy.mutate({ sessionId: s.id })).state).toBe('destroyed');
    });

    it('refuses images off the allow list and resources above the policy', async () => {
      expect(await codeOf(alice.sessions.create.mutate({ image: 'ubuntu:latest' }))).toBe(
        'TEMPLATE_NOT_FOUND',
      );
      expect(await codeOf(alice.sessions.create.mutate({ image: 'localhost:5000/x' }))).toBe('INPUT_INVALID');
      expect(
        await codeOf(alice.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 1_000_000 } })),
      ).toBe('LIMIT_EXCEEDED');
      const raw = await t.call(
        'mutation',
        'sessions.create',
        { image: IMAGE, privileged: true },
        { authorization: `Bearer ${aliceToken}` },
      );
      expect(raw.body.error?.data.studioCode).toBe('INPUT_INVALID');
    });

    it("another user's session id is NOT_FOUND on every procedure, and audited", async () => {
      const s = await alice.sessions.create.mutate({ image: IMAGE });
      const bob = createStudioClient({ url: t.url, token: await t.login('bob', 'bob-password-12') });
      const sessionId = s.id;
      const attempts: (() => Promise<unknown>)[] = [
        () => bob.sessions.get.query({ sessionId }),
        () => bob.sessions.stop.mutate({ sessionId }),
        () => bob.sessions.start.mutate({ sessionId }),
        () => bob.sessions.stats.query({ sessionId }),
        () => bob.sessions.destroy.mutate({ sessionId }),
        () => bob.files.list.query({ sessionId }),
        () => bob.files.read.query({ sessionId, path: 'a' }),
        () => bob.files.write.mutate({ sessionId, path: 'a', content: 'x' }),
        () => bob.files.mkdir.mutate({ sessionId, path: 'd' }),
        () => bob.files.remove.mutate({ sessionId, path: 'a' }),
        () => bob.files.rename.mutate({ sessionId, from: 'a', to: 'b' }),
        () => bob.exec.run.mutate({ sessionId, command: ['id'] }),
      ];
      for (const attempt of attempts) expect(await codeOf(attempt())).toBe('NOT_FOUND');
      expect((await bob.sessions.list.query()).map((x) => x.id)).not.toContain(s.id);
      expect((await alice.sessions.get.query({ sessionId })).state).toBe('running');
      const denied = await t.app.deps.store.listAudit({ action: 'session.access' });
      expect(denied.filter((e) => e.target === sessionId).length).toBeGreaterThanOrEqual(attempts.length);
      await alice.sessions.destroy.mutate({ sessionId });
    });

    it('50 concurrent creates for one user leave exactly 5 live sessions', async () => {
      const carol = await admin.users.create.mutate({ username: 'carol', password: 'carol-password-1' });
      const c = createStudioClient({ url: t.url, token: await t.login('carol', 'carol-password-1') });
      backend.createDelayMs = 20;
      try {
        const results = await Promise.allSettled(
          Array.from({ length: 50 }, () => c.sessions.create.mutate({ image: IMAGE })),
        );
        const ok = results.filter((r) => r.status === 'fulfilled');
        const codes = results.flatMap((r) =>
          r.status === 'rejected' ? [(r.reason as StudioClientError).code] : [],
        );
        expect(ok).toHaveLength(5);
        expect(new Set(codes)).toEqual(new Set(['SESSION_LIMIT']));
        expect(await c.sessions.list.query()).toHaveLength(5);
        expect(await t.app.deps.store.countLiveSessions(carol.id)).toBe(5);
        const limitError = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
        expect((limitError.reason as StudioClientError).httpStatus).toBe(412);
        expect((limitError.reason as StudioClientError).message).toMatch(/destroy one/);
      } finally {
        backend.createDelayMs = 0;
      }
      for (const s of await c.sessions.list.query()) await c.sessions.destroy.mutate({ sessionId: s.id });
      expect(await c.sessions.list.query()).toHaveLength(0);
    });

    it('a backend failure leaves the session failed with a reason', async () => {
      backend.failCreate = new IsolationError('RESOURCE_LIMIT', 'no room for another sandbox');
      try {
        expect(await codeOf(alice.sessions.create.mutate({ image: IMAGE }))).toBe('RESOURCE_LIMIT');
      } finally {
        backend.failCreate = undefined;
      }
      const all = await alice.sessions.list.query({ includeEnded: true });
      const failed = all.find((s) => s.state === 'failed');
      expect(failed?.failureReason).toBe('RESOURCE_LIMIT: no room for another sandbox');
    });

    it('pauses sessions idle past session.pauseAfterMs (issue 20), and a use resumes them', async () => {
      const s = await alice.sessions.create.mutate({ image: IMAGE });
      const later = new Date(Date.now() + t.app.env.policy.session.pauseAfterMs + 1000);
      await t.app.deps.sessions.sweep(later);
      expect((await alice.sessions.get.query({ sessionId: s.id })).state).toBe('paused');
      await alice.files.list.query({ sessionId: s.id });
      expect((await alice.sessions.get.query({ sessionId: s.id })).state).toBe('running');
      await alice.sessions.destroy.mutate({ sessionId: s.id });
    });

    it('stops sessions past their time limit, paused time not counted', async () => {
      const s = await alice.sessions.create.mutate({ image: IMAGE });
      const later = new Date(Date.now() + t.app.env.policy.session.ttlMs + 1000);
      expect(await t.app.deps.sessions.sweep(later)).toContain(s.id);
      expect((await alice.sessions.get.query({ sessionId: s.id })).state).toBe('stopped');
      await alice.sessions.destroy.mutate({ sessionId: s.id });
    });
  });

  it('refuses a request body over the size limit with PAYLOAD_TOO_LARGE', async () => {
    const huge = 'x'.repeat(2 * t.app.env.policy.files.maxFileBytes + 2 * 1024 * 1024);
    const r = await t.call(
      'mutation',
      'files.write',
      { sessionId: 'ses_aaaaaaaaaaaaaaaaaaaa', path: 'a', content: huge },
      { authorization: `Bearer ${aliceToken}` },
    );
    expect(r.status).toBe(413);
    expect(r.body.error?.data.studioCode).toBe('PAYLOAD_TOO_LARGE');
  });

  it('rate-limits logins per username and address', async () => {
    const codes: string[] = [];
    for (let i = 0; i < 12; i++) {
      const r = await t.call('mutation', 'auth.login', {
        username: 'ratelimited',
        password: 'wrong-password',
      });
      codes.push(r.body.error?.data.studioCode ?? 'OK');
    }
    expect(codes.slice(0, 10).every((c) => c === 'INVALID_CREDENTIALS')).toBe(true);
    expect(codes.slice(10)).toEqual(['RATE_LIMITED', 'RATE_LIMITED']);
    const r = await t.call('mutation', 'auth.login', { username: 'ratelimited', password: 'wrong-password' });
    expect(r.status).toBe(429);
    expect(r.body.error?.message).toMatch(/retry in \d+ s/);
    expect(
      isStudioClientError(
        new StudioClientError('x', {
          code: 'A',
          trpcCode: null,
          httpStatus: null,
          path: null,
          requestId: null,
        }),
        'A',
      ),
    ).toBe(true);
  });
});
