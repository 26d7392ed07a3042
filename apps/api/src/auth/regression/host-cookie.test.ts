import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, startTestApi, type TestApi } from '../../testing/api-fixture.ts';
import { FakeBackend } from '../../testing/fake-backend.ts';

// Cookie tossing: behind Traefik, previews live on sibling hosts (`*.preview.<domain>`), whose pages can set
// cookies for the parent domain. A plain `studio_token` planted that way would sign the victim into the
// attacker's account. Over HTTPS the login cookie is `__Host-studio_token` (browsers refuse to let another
// host set it) and no other name is read.

describe('regression: the login cookie cannot be planted by a sibling host', () => {
  let t: TestApi;
  beforeAll(async () => {
    t = await startTestApi({ backends: [new FakeBackend()], env: { STUDIO_TRUST_PROXY: 'true' } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('over HTTPS the cookie is __Host- prefixed, Secure, host-only, and the plain name is not read', async () => {
    const https = { 'x-forwarded-proto': 'https' };
    const login = await t.call(
      'mutation',
      'auth.login',
      { username: 'admin', password: ADMIN_PASSWORD },
      https,
    );
    const setCookie = login.headers.get('set-cookie') ?? '';
    expect(setCookie).toMatch(
      /^__Host-studio_token=ey[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+; Secure$/,
    );
    expect(setCookie).not.toMatch(/Domain=/i);
    const value = (setCookie.split(';')[0] as string).slice('__Host-studio_token='.length);

    expect(
      (await t.call('query', 'auth.me', undefined, { ...https, cookie: `__Host-studio_token=${value}` }))
        .status,
    ).toBe(200);
    // The same token under the name a sibling host could set: not a credential over HTTPS.
    const tossed = await t.call('query', 'auth.me', undefined, { ...https, cookie: `studio_token=${value}` });
    expect(tossed.status).toBe(401);
    // Plain HTTP (local mode, no sibling hosts) keeps the plain name.
    expect((await t.call('query', 'auth.me', undefined, { cookie: `studio_token=${value}` })).status).toBe(
      200,
    );
  });
});
