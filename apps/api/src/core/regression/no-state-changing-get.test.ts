import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPolicySchemas, defaultPolicy } from '@studio/policy';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAppRouter } from '../../router.ts';
import { ADMIN_PASSWORD, startTestApi, type TestApi } from '../../testing/api-fixture.ts';
import { FakeBackend, type FakeSandbox } from '../../testing/fake-backend.ts';

// Attack 1 of issue 16 started a command with a GET (`exec.stream` was a subscription that ran argv). A GET is
// what images, links, prefetches and navigations send: nothing may start or change on one. tRPC answers GET for
// queries and subscriptions and POST for mutations, so every query and subscription must be a read. Each is listed
// here with why it is one; a GET added to the router fails the first test until it is reviewed and listed, and
// every listed GET is called against a running session while the store, the sandboxes' files and the execs run in
// them are watched for any change.

type Ctx = { sessionId: string };
/** Every GET of the router, with why it is a read and an input to call it with. */
const READS: Record<string, { why: string; input: (c: Ctx) => unknown }> = {
  'auth.me': { why: 'the caller', input: () => undefined },
  'tokens.list': { why: "the caller's API tokens, hashes never shown", input: () => undefined },
  'users.list': { why: 'accounts (admins)', input: () => undefined },
  'backends.list': { why: 'which backends are available', input: () => undefined },
  'secrets.list': {
    why: "the caller's secrets: names, hosts and headers, never values",
    input: () => undefined,
  },
  'sessions.list': { why: "the caller's sessions", input: () => undefined },
  'templates.list': { why: 'the templates the caller may use', input: () => undefined },
  'templates.get': { why: 'one template with its last build log', input: () => ({ template: 'default' }) },
  'templates.logs': {
    why: "a template build's log; it starts no build (templates.build, a POST, does)",
    input: () => ({ template: 'default' }),
  },
  'sessions.get': { why: 'one session', input: (c) => ({ sessionId: c.sessionId }) },
  'snapshots.list': {
    why: "the caller's snapshots and the quota they count against",
    input: () => undefined,
  },
  'snapshots.get': { why: 'one snapshot of the caller', input: () => ({ snapshot: 'kept' }) },
  'sessions.checkEgress': {
    why: "whether the session's settings let it reach a host: a pure check, nothing is dialled",
    input: (c) => ({ sessionId: c.sessionId, host: 'example.com', port: 443 }),
  },
  'sessions.stats': { why: 'CPU, memory and disk figures', input: (c) => ({ sessionId: c.sessionId }) },
  'files.list': { why: 'a folder of the workspace', input: (c) => ({ sessionId: c.sessionId }) },
  'files.read': {
    why: 'a file of the workspace',
    input: (c) => ({ sessionId: c.sessionId, path: 'kept.txt' }),
  },
  'events.watchers': { why: 'who watches a session', input: (c) => ({ sessionId: c.sessionId }) },
  'events.history': { why: "a session's stored events, a page", input: (c) => ({ sessionId: c.sessionId }) },
  'recordings.list': { why: "a session's recording: its files", input: (c) => ({ sessionId: c.sessionId }) },
  'recordings.get': {
    why: "one file of a session's recording (written by the recorder, never by this read)",
    input: (c) => ({ sessionId: c.sessionId, file: 'events.jsonl' }),
  },
  'system.ping': { why: 'the API answers', input: () => undefined },
  'cluster.nodes': {
    why: "the cluster's node services as the store has them (admins)",
    input: () => undefined,
  },
  'events.subscribe': {
    why: "a session's events; its only effect is presence (watcher.joined/left, a file watch while it lasts)",
    input: (c) => ({ sessionId: c.sessionId }),
  },
  'exec.stream': {
    why: 'reads an exec that exec.start (a POST) started, with its token; it starts nothing',
    input: () => ({ execId: `exe_${'A'.repeat(22)}`, token: 'B'.repeat(43) }),
  },
};

/** Every file under a workspace with its content (base64), sorted. */
function workspaceFiles(root: string): [string, string][] {
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((d) => d.isFile())
    .map((d): [string, string] => {
      const path = join(d.parentPath, d.name);
      return [path.slice(root.length), readFileSync(path).toString('base64')];
    })
    .sort(([a], [b]) => a.localeCompare(b));
}

const gets = Object.entries(createAppRouter(createPolicySchemas(defaultPolicy))._def.procedures)
  .map(([path, p]) => ({ path, type: (p as unknown as { _def: { type: string } })._def.type }))
  .filter((p) => p.type !== 'mutation');

describe('regression: no GET starts or changes anything', () => {
  let t: TestApi;
  let token = '';
  let sessionId = '';
  const backend = new FakeBackend();
  let execs = 0;

  beforeAll(async () => {
    t = await startTestApi({ backends: [backend] });
    token = await t.login('admin', ADMIN_PASSWORD);
    const auth = { authorization: `Bearer ${token}` };
    const created = await t.call(
      'mutation',
      'sessions.create',
      { image: 'studio-sandbox:latest', network: { mode: 'allowlist', allow: ['example.com'] } },
      auth,
    );
    sessionId = (created.body.result?.data as { id: string } | undefined)?.id ?? '';
    expect(sessionId).toMatch(/^ses_/);
    await t.call('mutation', 'files.write', { sessionId, path: 'kept.txt', content: 'kept' }, auth);
    expect((await t.call('mutation', 'snapshots.create', { sessionId, name: 'kept' }, auth)).status).toBe(
      200,
    );
    // Count every exec run in any sandbox of this backend from here on.
    const sandbox = [...backend.sandboxes.values()][0] as FakeSandbox;
    const proto = Object.getPrototypeOf(sandbox) as FakeSandbox;
    const exec = proto.exec;
    proto.exec = function (this: FakeSandbox, ...args: Parameters<FakeSandbox['exec']>) {
      execs++;
      return exec.apply(this, args);
    };
  }, 120_000);
  afterAll(async () => {
    await t?.close();
  });

  it('every query and subscription is a reviewed read (a new GET must be listed here with why)', () => {
    expect(gets.map((g) => g.path).sort()).toEqual(Object.keys(READS).sort());
  });

  /** What a GET must leave as it was: the store's records, the sandboxes and their files, execs run. */
  async function snapshot() {
    const store = t.app.deps.store;
    const users = await store.listUsers();
    const sessions = (await Promise.all(users.map((u) => store.listSessions(u.id, { includeEnded: true }))))
      .flat()
      // Reading a session keeps it from idling out (lastActiveAt): bookkeeping, not a change of the session.
      .map(({ lastActiveAt: _, ...rest }) => rest);
    const tokens = (await Promise.all(users.map((u) => store.listApiTokens(u.id)))).flat();
    const audit = (await store.listAudit({ limit: 10_000 })).filter((a) => a.outcome !== 'denied');
    const sandboxes = [...backend.sandboxes.values()].map((s) => ({
      id: s.id,
      state: s.state,
      files: workspaceFiles(s.workspace),
    }));
    return { users, sessions, tokens, audit: audit.length, sandboxes, execs };
  }

  it('calling every GET changes nothing: no exec, no file, no record', async () => {
    const before = await snapshot();
    for (const { path, type } of gets) {
      const input = READS[path]?.input({ sessionId });
      const query = input === undefined ? '' : `?input=${encodeURIComponent(JSON.stringify(input))}`;
      const abort = new AbortController();
      const res = await fetch(`${t.url}/trpc/${path}${query}`, {
        headers: {
          authorization: `Bearer ${token}`,
          ...(type === 'subscription' ? { accept: 'text/event-stream' } : {}),
        },
        signal: abort.signal,
      });
      if (type === 'query') expect(res.status, `${path}: ${await res.clone().text()}`).toBe(200);
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      const timer = setTimeout(() => abort.abort(), 500);
      await (async () => {
        for (;;) if ((await reader.read()).done) return;
      })().catch(() => undefined);
      clearTimeout(timer);
    }
    // The streams' watchers leave when they close; give them a moment.
    await new Promise((r) => setTimeout(r, 300));
    expect(await snapshot()).toEqual(before);
  });

  it('the same watch sees a change made by a POST (the check above can fail)', async () => {
    const before = await snapshot();
    const res = await t.call(
      'mutation',
      'exec.run',
      { sessionId, command: ['true'] },
      { authorization: `Bearer ${token}` },
    );
    expect(res.status).toBe(200);
    const after = await snapshot();
    // The session's first exec also writes the egress trust files into the sandbox (one more exec of Studio's own).
    expect(after.execs).toBeGreaterThan(before.execs);
    expect(after).not.toEqual(before);
  });
});
