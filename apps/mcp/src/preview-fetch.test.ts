import type { StudioClient } from '@studio/client';
import { describe, expect, it } from 'vitest';
import { PreviewFetcher, readCapped } from './preview-fetch.ts';

const SID = 'ses_0123456789abcdefgh';

function fakePreview(options: { cookie?: boolean } = {}) {
  const calls: { url: string; cookie: string | null; redirect: RequestInit['redirect'] }[] = [];
  let grants = 0;
  const client = {
    previews: {
      create: {
        mutate: async () => {
          grants += 1;
          return {
            url: `http://127.0.0.1:5555/__studio/auth?token=g${grants}`,
            expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
          };
        },
      },
    },
  } as unknown as StudioClient;
  const fetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input);
    const cookie = new Headers(init?.headers).get('cookie');
    calls.push({ url, cookie, redirect: init?.redirect });
    if (url.includes('/__studio/auth')) {
      const headers = new Headers({ location: '/' });
      if (options.cookie !== false)
        headers.append('set-cookie', `__Host-studio_preview=${url.slice(-2)}; HttpOnly; Path=/`);
      return new Response(null, { status: 302, headers });
    }
    if (cookie === '__Host-studio_preview=g1' && url.endsWith('/expired'))
      return new Response('no grant', { status: 401 });
    return new Response(`page ${url} for ${cookie}`, {
      status: 200,
      headers: { 'content-type': 'text/plain', 'set-cookie': 'app=1' },
    });
  }) as typeof globalThis.fetch;
  return { fetcher: new PreviewFetcher({ client, fetch }), calls, grants: () => grants };
}

const signal = new AbortController().signal;

describe('PreviewFetcher', () => {
  it('opens the grant link unfollowed, then sends the preview cookie; grants are reused', async () => {
    const p = fakePreview();
    const page = await p.fetcher.fetch(
      { sessionId: SID, port: 3000, path: '/a?b=1', maxBytes: 1000 },
      signal,
    );
    expect(page).toMatchObject({
      status: 200,
      body: 'page http://127.0.0.1:5555/a?b=1 for __Host-studio_preview=g1',
      truncated: false,
    });
    expect(page.headers['set-cookie']).toBeUndefined();
    expect(p.calls.every((c) => c.redirect === 'manual')).toBe(true);
    await p.fetcher.fetch({ sessionId: SID, port: 3000, path: '/', maxBytes: 1000 }, signal);
    expect(p.grants()).toBe(1);
  });

  it('gets a new grant once when the proxy no longer knows the old one', async () => {
    const p = fakePreview();
    const page = await p.fetcher.fetch(
      { sessionId: SID, port: 3000, path: '/expired', maxBytes: 1000 },
      signal,
    );
    expect(page.status).toBe(200);
    expect(p.grants()).toBe(2);
  });

  it('says so when the proxy sets no cookie', async () => {
    const p = fakePreview({ cookie: false });
    await expect(
      p.fetcher.fetch({ sessionId: SID, port: 3000, path: '/', maxBytes: 10 }, signal),
    ).rejects.toMatchObject({ code: 'PREVIEW_UNAVAILABLE' });
  });
});

describe('readCapped', () => {
  it('stops reading at maxBytes', async () => {
    const r = await readCapped(new Response('x'.repeat(10_000)), 100);
    expect(r).toMatchObject({ bodyBytes: 100, truncated: true });
    expect(r.body).toHaveLength(100);
  });
});
