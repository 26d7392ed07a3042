import type { inferRouterInputs, inferRouterOutputs } from '@trpc/server';
import { describe, expect, expectTypeOf, it, vi } from 'vitest';
import {
  type AppRouter,
  createStudioClient,
  isStudioClientError,
  loginStudioClient,
  StudioClientError,
  type StudioErrorCode,
  toStudioClientError,
} from './index.ts';

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

describe('the error-code union', () => {
  it("holds the API's, the policy's, the backends' and the transport's codes (types only)", () => {
    expectTypeOf<'EGRESS_DENIED'>().toExtend<StudioErrorCode>();
    expectTypeOf<'HUMAN_HAS_CONTROL'>().toExtend<StudioErrorCode>();
    expectTypeOf<'HOST_INVALID'>().toExtend<StudioErrorCode>();
    expectTypeOf<'RESOURCE_LIMIT'>().toExtend<StudioErrorCode>();
    expectTypeOf<'NETWORK'>().toExtend<StudioErrorCode>();
    expectTypeOf<'EGRESS_DENYED'>().not.toExtend<StudioErrorCode>();
  });

  it('carries EGRESS_DENIED from the API with the message naming the host and the fix', async () => {
    const message =
      "example.com is not on this session's allowlist; add it with sessions.setNetwork (or ask the session's owner) (not_allowed)";
    const api = apiAnswering(403, {
      error: {
        code: -32003,
        message,
        data: {
          code: 'FORBIDDEN',
          httpStatus: 403,
          studioCode: 'EGRESS_DENIED',
          path: 'sessions.checkEgress',
          requestId: 'req_e',
        },
      },
    });
    const client = createStudioClient({ url: 'http://127.0.0.1:4000', token: 't', fetch: api.fetch });
    const error = await client.sessions.checkEgress
      .query({ sessionId: 'ses_0123456789abcdefgh', host: 'example.com' })
      .catch((e: unknown) => e);
    expect(isStudioClientError(error, 'EGRESS_DENIED')).toBe(true);
    expect(error).toMatchObject({ code: 'EGRESS_DENIED', trpcCode: 'FORBIDDEN', httpStatus: 403, message });
    expect(api.calls[0]?.url).toMatch(/\/trpc\/sessions\.checkEgress\?input=/);
  });
});

describe('secrets', () => {
  type CreateInput = inferRouterInputs<AppRouter>['secrets']['create'];
  type Listed = inferRouterOutputs<AppRouter>['secrets']['list'][number];

  it('secrets.create takes a name, a value and hosts (header optional); what comes back has no value (types)', () => {
    expectTypeOf({
      name: 'OPENAI_API_KEY',
      value: 'sk-…',
      hosts: ['api.openai.com'],
    }).toExtend<CreateInput>();
    expectTypeOf({
      name: 'MY_API_KEY',
      value: 'k',
      hosts: ['*.example.com'],
      header: 'X-Api-Key: {{value}}',
    }).toExtend<CreateInput>();
    expectTypeOf<{ name: string; hosts: string[] }>().not.toExtend<CreateInput>();
    expectTypeOf<Listed>().toEqualTypeOf<{
      name: string;
      hosts: string[];
      header: string;
      createdAt: string;
      updatedAt: string;
    }>();
    expectTypeOf<Listed>().not.toHaveProperty('value');
    expectTypeOf<inferRouterOutputs<AppRouter>['secrets']['create']>().toEqualTypeOf<Listed>();
    expectTypeOf<inferRouterInputs<AppRouter>['sessions']['create']['secrets']>().toEqualTypeOf<
      string[] | undefined
    >();
  });

  it('secrets.create posts the value once, to /trpc/secrets.create, and gets the secret back without it', async () => {
    const listed = {
      name: 'OPENAI_API_KEY',
      hosts: ['api.openai.com'],
      header: 'Authorization: Bearer {{value}}',
      createdAt: '2025-01-01T00:00:00.000Z',
      updatedAt: '2025-01-01T00:00:00.000Z',
    };
    const bodies: string[] = [];
    const fetch = (async (input: string | URL | Request, init?: RequestInit) => {
      bodies.push(`${String(input)} ${String(init?.method)} ${String(init?.body)}`);
      return new Response(JSON.stringify({ result: { data: listed } }), {
        headers: { 'content-type': 'application/json' },
      });
    }) as typeof globalThis.fetch;
    const client = createStudioClient({ url: 'http://127.0.0.1:4000', token: 't', fetch });
    const saved = await client.secrets.create.mutate({
      name: 'OPENAI_API_KEY',
      value: 'sk-test-value',
      hosts: ['api.openai.com'],
    });
    expect(saved).toEqual(listed);
    expect(bodies).toEqual([
      'http://127.0.0.1:4000/trpc/secrets.create POST {"name":"OPENAI_API_KEY","value":"sk-test-value","hosts":["api.openai.com"]}',
    ]);
  });
});

describe('EventSource', () => {
  // Records what the SSE link asks of it, then reports the stream failed.
  function recordingEventSource() {
    const opened: { url: string; init: unknown }[] = [];
    class Recording {
      readonly CLOSED = 2;
      readonly CONNECTING = 0;
      readonly OPEN = 1;
      readyState = 0;
      constructor(url: string, init?: unknown) {
        opened.push({ url, init });
      }
      addEventListener() {}
      removeEventListener() {}
      close() {
        this.readyState = 2;
      }
    }
    return { opened, EventSource: Recording };
  }

  it('loginStudioClient gives the signed-in client the EventSource it was given', async () => {
    const api = apiAnswering(200, {
      result: { data: { token: 'jwt_1', expiresAt: '2030-01-01T00:00:00Z' } },
    });
    const recording = recordingEventSource();
    const { client, token } = await loginStudioClient({
      url: 'http://127.0.0.1:4000',
      username: 'alice',
      password: 'pw',
      fetch: api.fetch,
      EventSource: recording.EventSource,
    });
    expect(token).toBe('jwt_1');
    const sub = client.events.subscribe.subscribe({ sessionId: 'ses_1' }, { onData: () => undefined });
    await vi.waitFor(() => expect(recording.opened).toHaveLength(1));
    sub.unsubscribe();
    expect(recording.opened[0]?.url).toMatch(/^http:\/\/127\.0\.0\.1:4000\/trpc\/events\.subscribe\?input=/);
  });

  it('without one (Node 20), a subscription fails with a message naming the fix', async () => {
    const global = globalThis as { EventSource?: unknown };
    const saved = global.EventSource;
    delete global.EventSource;
    try {
      const client = createStudioClient({ url: 'http://127.0.0.1:4000', token: 't' });
      const error = await new Promise<unknown>((resolve) => {
        client.events.subscribe.subscribe({ sessionId: 'ses_1' }, { onError: resolve });
      });
      expect(error).toBeInstanceOf(StudioClientError);
      expect((error as StudioClientError).message).toMatch(
        /no EventSource.*import \{ EventSource \} from 'eventsource'/,
      );
    } finally {
      if (saved !== undefined) global.EventSource = saved;
    }
  });
});
