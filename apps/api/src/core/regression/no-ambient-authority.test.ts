import { createPolicySchemas, defaultPolicy } from '@studio/policy';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAppRouter } from '../../router.ts';
import { ADMIN_PASSWORD, IDE, startTestApi, type TestApi } from '../../testing/api-fixture.ts';
import { FakeBackend } from '../../testing/fake-backend.ts';

// Attack 1 of issue 16: a preview page embedded `<img src="…/trpc/exec.stream?input=…">` and the browser sent the
// login cookie along. Whatever a page can make a browser send (images, forms, navigations, EventSource: none can
// set a header), the cookie alone must buy nothing: every procedure, reached with a valid login cookie and without
// the IDE's proof header, is refused before it runs. The walk covers the whole router, so a procedure added later
// is covered too.

const procedures = Object.entries(createAppRouter(createPolicySchemas(defaultPolicy))._def.procedures).map(
  ([path, p]) => ({
    path,
    type: (p as unknown as { _def: { type: 'query' | 'mutation' | 'subscription' } })._def.type,
  }),
);

describe('regression: the login cookie carries no ambient authority', () => {
  let t: TestApi;
  let cookie = '';

  /** One raw call of `path` as its type is sent over HTTP; an event stream is read for its first bytes only. */
  async function call(path: string, type: string, headers: Record<string, string>) {
    const input = encodeURIComponent(JSON.stringify({}));
    const abort = new AbortController();
    const res =
      type === 'mutation'
        ? await fetch(`${t.url}/trpc/${path}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...headers },
            body: '{}',
          })
        : await fetch(`${t.url}/trpc/${path}?input=${input}`, {
            headers: type === 'subscription' ? { accept: 'text/event-stream', ...headers } : headers,
            signal: abort.signal,
          });
    let text = '';
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const timer = setTimeout(() => abort.abort(), 1500);
    try {
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) break;
        text += new TextDecoder().decode(chunk.value);
        if (type === 'subscription' && /\n\n/.test(text) && !text.startsWith(':')) break;
      }
    } catch {
      // aborted: an open stream
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
    return { status: res.status, text };
  }

  beforeAll(async () => {
    t = await startTestApi({ backends: [new FakeBackend()] });
    const login = await t.call(
      'mutation',
      'auth.login',
      { username: 'admin', password: ADMIN_PASSWORD },
      IDE,
    );
    cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
    expect(cookie).toMatch(/^__Host-studio_token=ey/);
  }, 120_000);
  afterAll(async () => {
    await t?.close();
  });

  it('walks every procedure: queries, mutations and subscriptions', () => {
    const types = new Set(procedures.map((p) => p.type));
    expect(types).toEqual(new Set(['query', 'mutation', 'subscription']));
    expect(procedures.length).toBeGreaterThan(30);
  });

  it.each(procedures)(
    '$type $path: refused with the cookie and no IDE proof, before input is read',
    async ({ path, type }) => {
      const refused = await call(path, type, { cookie });
      // `{}` is not a valid input of most procedures: a refusal for the input would mean the procedure ran first.
      expect(refused.text, `${path}: ${refused.text.slice(0, 200)}`).toContain(
        '"studioCode":"ORIGIN_REFUSED"',
      );
      if (type !== 'subscription') expect(refused.status).toBe(403);
      // Also from a foreign origin or site with the header (a page cannot send it, but a header is not all).
      const foreignHeaders: Record<string, string>[] = [
        { origin: 'http://8000-abc.localhost:4001' },
        { 'sec-fetch-site': 'cross-site' },
      ];
      for (const extra of foreignHeaders) {
        const foreign = await call(path, type, { cookie, ...IDE, ...extra });
        expect(foreign.text, `${path} ${JSON.stringify(extra)}`).toContain('"studioCode":"ORIGIN_REFUSED"');
      }
    },
  );

  it('the same calls with the proof are not refused for it (the walk above can fail)', async () => {
    // Ordered so that auth.logout (which ends this sign-in) comes last.
    const ordered = [...procedures].sort(
      (a, b) => Number(a.path === 'auth.logout') - Number(b.path === 'auth.logout'),
    );
    for (const { path, type } of ordered) {
      const allowed = await call(path, type, { cookie, ...IDE, 'sec-fetch-site': 'same-origin' });
      expect(allowed.text, path).not.toContain('ORIGIN_REFUSED');
    }
  });
});
