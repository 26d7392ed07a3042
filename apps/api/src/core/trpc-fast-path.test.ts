import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { initTRPC, TRPCError } from '@trpc/server';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createFastPath } from './trpc-fast-path.ts';

// A router shaped like the app's: an error formatter that reads ctx, a middleware, input parsers, a cookie set
// through ctx.res, and a subscription the fast path must leave alone.
interface Ctx {
  res: ServerResponse;
  user: string | undefined;
}
const t = initTRPC.context<Ctx>().create({
  errorFormatter: ({ shape, ctx }) => ({
    ...shape,
    data: { ...shape.data, stack: undefined, who: ctx?.user ?? null },
  }),
});
const authed = t.procedure.use(({ ctx, next }) => {
  if (!ctx.user) throw new TRPCError({ code: 'UNAUTHORIZED', message: 'sign in' });
  return next();
});
let mutations = 0;
const appRouter = t.router({
  ping: t.procedure.query(() => ({ ok: true })),
  echo: t.procedure.input(z.object({ n: z.number().int() })).query(({ input }) => ({ n: input.n * 2 })),
  me: authed.query(({ ctx }) => ctx.user),
  nested: t.router({
    bump: t.procedure.input(z.object({ by: z.number() })).mutation(({ input }) => {
      mutations += 1;
      return input.by * 10;
    }),
  }),
  login: t.procedure.mutation(({ ctx }) => {
    ctx.res.setHeader('Set-Cookie', 'a=b; HttpOnly');
    return 'ok';
  }),
  boom: t.procedure.query(() => {
    throw new Error('hidden detail');
  }),
  ticks: t.procedure.subscription(async function* () {
    yield 1;
  }),
});

const createContext = ({ req, res }: { req: IncomingMessage; res: ServerResponse }): Ctx => ({
  res,
  user: req.headers.authorization?.slice(7),
});
const options = { router: appRouter, createContext, basePath: '/trpc/', maxBodySize: 1024 };

let fastHits = 0;
async function listen(useFast: boolean): Promise<{ server: Server; url: string }> {
  const standard = createHTTPHandler(options);
  const fast = createFastPath(options);
  const server = createServer((req, res) => {
    if (useFast && fast(req, res)) {
      fastHits += 1;
      return;
    }
    standard(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

let slow: { server: Server; url: string };
let quick: { server: Server; url: string };
beforeAll(async () => {
  slow = await listen(false);
  quick = await listen(true);
});
afterAll(() => {
  slow.server.close();
  quick.server.close();
});

const cases: Array<[string, string, RequestInit?]> = [
  ['query', '/trpc/ping'],
  ['query with input', `/trpc/echo?input=${encodeURIComponent(JSON.stringify({ n: 21 }))}`],
  ['bad input', `/trpc/echo?input=${encodeURIComponent(JSON.stringify({ n: 'x' }))}`],
  ['unparsable input', '/trpc/echo?input=%7Bnope'],
  ['middleware refusal', '/trpc/me'],
  ['authorised', '/trpc/me', { headers: { authorization: 'Bearer alice' } }],
  ['hidden error', '/trpc/boom'],
  [
    'nested mutation',
    '/trpc/nested.bump',
    { method: 'POST', body: '{"by":2}', headers: { 'content-type': 'application/json' } },
  ],
  [
    'mutation, bad JSON',
    '/trpc/nested.bump',
    { method: 'POST', body: '{by', headers: { 'content-type': 'application/json' } },
  ],
  ['mutation over GET', '/trpc/nested.bump'],
  [
    'query over POST',
    '/trpc/ping',
    { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } },
  ],
  [
    'mutation setting a cookie',
    '/trpc/login',
    { method: 'POST', headers: { 'content-type': 'application/json' } },
  ],
  ['mutation without a content type', '/trpc/login', { method: 'POST' }],
  ['unknown procedure', '/trpc/nope'],
  ['batch', `/trpc/ping,echo?batch=1&input=${encodeURIComponent(JSON.stringify({ 1: { n: 1 } }))}`],
  [
    'body over the cap',
    '/trpc/nested.bump',
    {
      method: 'POST',
      body: `{"by":1,"pad":"${'x'.repeat(2000)}"}`,
      headers: { 'content-type': 'application/json' },
    },
  ],
];

describe('tRPC fast path', () => {
  it.each(cases)(
    '%s: the same status, body, cookie and content type as the standard handler',
    async (_name, path, init) => {
      const a = await fetch(slow.url + path, init);
      const b = await fetch(quick.url + path, init);
      expect(b.status).toBe(a.status);
      expect(b.headers.get('content-type')).toBe(a.headers.get('content-type'));
      expect(b.headers.get('set-cookie')).toBe(a.headers.get('set-cookie'));
      expect(await b.text()).toBe(await a.text());
    },
  );

  it('serves single queries and mutations itself and leaves batches and subscriptions to tRPC', async () => {
    const before = fastHits;
    const ran = mutations;
    await fetch(`${quick.url}/trpc/ping`);
    await fetch(`${quick.url}/trpc/nested.bump`, {
      method: 'POST',
      body: '{"by":1}',
      headers: { 'content-type': 'application/json' },
    });
    expect(fastHits - before).toBe(2);
    expect(mutations - ran).toBe(1);
    await fetch(`${quick.url}/trpc/ping?batch=1&input=%7B%7D`);
    const sse = await fetch(`${quick.url}/trpc/ticks`, { headers: { accept: 'text/event-stream' } });
    expect(sse.headers.get('content-type')).toContain('text/event-stream');
    await sse.body?.cancel();
    expect(fastHits - before).toBe(2);
  });
});
