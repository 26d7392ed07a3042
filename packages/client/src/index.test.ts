import { describe, expect, it } from 'vitest';
import { createStudioClient, isStudioClientError, StudioClientError, toStudioClientError } from './index.ts';

// A fetch that answers like the Studio API: a tRPC error body with data.studioCode.
function apiAnswering(status: number, body: unknown) {
  const calls: { url: string; headers: Headers }[] = [];
  const fetch = (async (input: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: String(input), headers: new Headers(init?.headers) });
    return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  }) as typeof globalThis.fetch;
  return { fetch, calls };
}

describe('createStudioClient', () => {
  it('sends the token as a bearer header to <url>/trpc/<procedure>', async () => {
    const api = apiAnswering(200, {
      result: { data: { id: 'usr_1', username: 'a', role: 'user', via: 'login' } },
    });
    const client = createStudioClient({ url: 'http://127.0.0.1:4000/', token: 'sst_abc', fetch: api.fetch });
    expect(await client.auth.me.query()).toMatchObject({ username: 'a' });
    expect(api.calls[0]?.url).toBe('http://127.0.0.1:4000/trpc/auth.me');
    expect(api.calls[0]?.headers.get('authorization')).toBe('Bearer sst_abc');
  });

  it('surfaces API errors as StudioClientError with the Studio code', async () => {
    const api = apiAnswering(412, {
      error: {
        code: -32012,
        message: 'you already have 5 live sessions (the limit is 5); destroy one with sessions.destroy first',
        data: {
          code: 'PRECONDITION_FAILED',
          httpStatus: 412,
          studioCode: 'SESSION_LIMIT',
          path: 'sessions.create',
          requestId: 'req_x',
        },
      },
    });
    const client = createStudioClient({ url: 'http://127.0.0.1:4000', token: 't', fetch: api.fetch });
    const error = await client.sessions.create
      .mutate({ image: 'studio-sandbox:latest' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StudioClientError);
    expect(error).toMatchObject({
      code: 'SESSION_LIMIT',
      trpcCode: 'PRECONDITION_FAILED',
      httpStatus: 412,
      path: 'sessions.create',
      requestId: 'req_x',
    });
    expect(isStudioClientError(error, 'SESSION_LIMIT')).toBe(true);
  });

  it('reports an unreachable server as NETWORK', async () => {
    const fetch = (async () => {
      throw new TypeError('fetch failed');
    }) as typeof globalThis.fetch;
    const client = createStudioClient({ url: 'http://127.0.0.1:1', fetch });
    const error = await client.auth.me.query().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'NETWORK' });
  });

  it('refuses a URL that is not http(s)', () => {
    expect(() => createStudioClient({ url: 'ftp://x' })).toThrow(StudioClientError);
  });

  it('toStudioClientError passes its own errors through and wraps anything else', () => {
    const own = new StudioClientError('x', {
      code: 'A',
      trpcCode: null,
      httpStatus: null,
      path: null,
      requestId: null,
    });
    expect(toStudioClientError(own)).toBe(own);
    expect(toStudioClientError('boom')).toMatchObject({ code: 'NETWORK', message: 'boom' });
  });
});
