import { randomBytes } from 'node:crypto';
import { createStudioClient, type StudioClient } from '@studio/client';
import { openDb, Store } from '@studio/db';
import { freshPglite } from '@studio/db/testing';
import { EventSource } from 'eventsource';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../core/logger.ts';
import { ADMIN_PASSWORD, codeOf, startTestApi, type TestApi } from '../testing/api-fixture.ts';
import { FakeBackend } from '../testing/fake-backend.ts';
import { type Actor, EventBus, type SessionEvent, type StreamedEvent } from './event-bus.ts';
import { EventHistory, resumeCursor } from './event-history.ts';

// Issue 22: sessions' events kept in the store (batched off the publisher's path, bounded, presence left out),
// read back a page at a time with events.history, and continued live from the page's cursor with nothing lost
// or twice. The store's own queries are proven on PGlite and PostgreSQL in packages/db.

const IMAGE = 'studio-sandbox:latest';
const actor: Actor = { kind: 'agent', userId: 'usr_x', name: 'x' };
const output = (data: string) => ({
  type: 'exec.output' as const,
  execId: 'exe_1',
  stream: 'stdout' as const,
  data,
  truncated: false,
});

async function until(check: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function sessionOf(store: Store): Promise<{ ownerId: string; sessionId: string }> {
  const hex = randomBytes(8).toString('hex');
  const user = await store.createUser({
    id: `usr_${hex}`,
    username: `u${hex}`,
    passwordHash: 'x',
    role: 'user',
  });
  const session = await store.reserveSession(
    {
      id: `ses_${hex}${hex}`,
      ownerId: user.id,
      backend: 'docker',
      image: IMAGE,
      resources: {
        memoryBytes: 2 ** 30,
        cpus: 1,
        pids: 512,
        diskBytes: 2 ** 31,
        inodes: 1e5,
        tmpBytes: 2 ** 28,
      },
      instanceId: 'test',
    },
    5,
  );
  return { ownerId: user.id, sessionId: session.id };
}

describe('EventHistory', () => {
  it('writes in batches after publish returns, leaves presence out, keeps the newest per session', async () => {
    const store = await Store.open(await freshPglite());
    const { ownerId, sessionId } = await sessionOf(store);
    const history = new EventHistory({
      store,
      logger: createLogger({ level: 'silent' }),
      keep: 20,
      flushMs: 300,
      batchSize: 10,
      sweepMs: 0,
    });
    const bus = new EventBus({ history });
    const stored = async () => (await store.listSessionEvents(ownerId, sessionId, { limit: 1000 })).length;

    bus.publish(sessionId, actor, output('one\n'));
    bus.publish(sessionId, actor, { type: 'watcher.joined', watcherId: 'w1', via: 'events' });
    // publish only queued it: nothing is written on its path.
    expect(await stored()).toBe(0);
    await until(async () => (await stored()) === 1, 'the timed flush');

    for (let i = 0; i < 30; i++) bus.publish(sessionId, actor, output(`line ${i}\n`));
    bus.publish(sessionId, null, { type: 'watcher.left', watcherId: 'w1', via: 'events' });
    await history.flush();
    const kept = await store.listSessionEvents(ownerId, sessionId, { limit: 1000 });
    expect(kept).toHaveLength(20);
    expect(kept.every((e) => e.body.type === 'exec.output')).toBe(true);

    // A page: oldest first, as the bus sent them, the next page's `before`, and the cursor to go on live from.
    const page = await history.page(ownerId, sessionId, { limit: 5, head: bus.head(sessionId) });
    expect(page.events.map((e) => e.type === 'exec.output' && e.data)).toEqual(
      [25, 26, 27, 28, 29].map((i) => `line ${i}\n`),
    );
    expect(page.events[0]).toMatchObject({ sessionId, actor, truncated: false, execId: 'exe_1' });
    // The newest kept event is not the bus's latest (a watcher left after it): live goes on from the head.
    expect(page.cursor).toBe(bus.head(sessionId));
    const older = await history.page(ownerId, sessionId, { before: page.nextBefore ?? '', limit: 100 });
    expect(older.events).toHaveLength(15);
    expect(older.nextBefore).toBeNull();
    expect(older.cursor).toBeNull();

    // A destroyed session's events go with it.
    bus.publish(sessionId, actor, { type: 'session.status', state: 'destroyed' });
    bus.drop(sessionId);
    await until(async () => (await stored()) === 0, 'the events to be forgotten');
    await history.close();
  });

  it('logs a store that fails and never throws into the publisher', async () => {
    const db = await openDb({});
    const store = await Store.open(db);
    const { sessionId } = await sessionOf(store);
    const lines: string[] = [];
    const history = new EventHistory({
      store,
      logger: createLogger({ level: 'warn', write: (line) => lines.push(line) }),
      sweepMs: 0,
    });
    const bus = new EventBus({ history });
    await db.close();
    expect(() => bus.publish(sessionId, actor, output('lost\n'))).not.toThrow();
    await expect(history.flush()).resolves.toBeUndefined();
    expect(lines.map((l) => JSON.parse(l))).toEqual([
      expect.objectContaining({
        msg: 'session events not kept in the store (history will miss them)',
        lost: 1,
        error: expect.objectContaining({ code: 'UNAVAILABLE' }),
      }),
    ]);
    // The bus itself carries on.
    expect(bus.publish(sessionId, actor, output('still live\n'))).toMatchObject({ data: 'still live\n' });
    await history.close();
  });

  it('resumes after the newest kept event only when it is the bus’s latest', () => {
    expect(resumeCursor('ab-7', 'ab-7')).toBe('ab-7');
    expect(resumeCursor('ab-9', 'ab-7')).toBe('ab-9');
    expect(resumeCursor('ab-5', 'ab-7')).toBe('ab-7');
    // Kept by a process that has since restarted: its cursor would only give a gap.
    expect(resumeCursor('cd-900', 'ab-3')).toBe('ab-3');
    expect(resumeCursor(undefined, 'ab-0')).toBe('ab-0');
    expect(resumeCursor('ab-4', undefined)).toBe('ab-4');
    expect(resumeCursor(undefined, undefined)).toBeNull();
  });
});

describe('events.history over the API (fake backend)', { timeout: 60_000 }, () => {
  let t: TestApi;
  let alice: StudioClient;
  let agent: StudioClient;
  let bob: StudioClient;
  let sessionId: string;

  beforeAll(async () => {
    t = await startTestApi({ backends: [new FakeBackend()] });
    const admin = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
    await admin.users.create.mutate({ username: 'alice', password: 'alice-password-1' });
    await admin.users.create.mutate({ username: 'bob', password: 'bob-password-12' });
    const token = await t.login('alice', 'alice-password-1');
    alice = createStudioClient({ url: t.url, token, EventSource: EventSource as never });
    bob = createStudioClient({ url: t.url, token: await t.login('bob', 'bob-password-12') });
    const made = await alice.tokens.create.mutate({ name: 'claude', agent: true });
    agent = createStudioClient({ url: t.url, token: made.token });
    sessionId = (await alice.sessions.create.mutate({ image: IMAGE })).id;
  });
  afterAll(async () => {
    await t?.close();
  });

  it('shows what an agent did before anyone watched, pages back, and is yours only', async () => {
    await agent.exec.run.mutate({ sessionId, command: ['sh', '-c', 'echo history-marker-1'] });
    await agent.files.write.mutate({ sessionId, path: 'notes.txt', content: 'hi' });
    const page = await alice.events.history.query({ sessionId });
    const types = page.events.map((e) => e.type);
    expect(types).toEqual(
      expect.arrayContaining([
        'session.status',
        'exec.started',
        'exec.output',
        'exec.exited',
        'file.changed',
      ]),
    );
    expect(types.indexOf('exec.started')).toBeLessThan(types.indexOf('exec.exited'));
    const started = page.events.find((e) => e.type === 'exec.started');
    expect(started?.actor).toMatchObject({ kind: 'agent', name: 'alice' });
    expect(page.events.some((e) => e.type === 'exec.output' && e.data.includes('history-marker-1'))).toBe(
      true,
    );
    expect(page.events.find((e) => e.type === 'exec.exited')).toMatchObject({ exitCode: 0 });
    expect(page.events.at(-1)).toMatchObject({ type: 'file.changed', op: 'write', path: 'notes.txt' });
    expect(page.nextBefore).toBeNull();

    // Two at a time, back to the start: the same events, in the same order.
    const paged: SessionEvent[] = [];
    let before: string | undefined;
    for (;;) {
      const p = await alice.events.history.query({ sessionId, limit: 2, ...(before ? { before } : {}) });
      paged.unshift(...(p.events as SessionEvent[]));
      if (p.nextBefore === null) break;
      before = p.nextBefore;
    }
    expect(paged.map((e) => e.id)).toEqual(page.events.map((e) => e.id));

    expect(await codeOf(bob.events.history.query({ sessionId }))).toBe('NOT_FOUND');
    expect(await codeOf(alice.events.history.query({ sessionId, before: 'abc' }))).toBe('INPUT_INVALID');
    expect(await codeOf(alice.events.history.query({ sessionId, limit: 201 }))).toBe('LIMIT_EXCEEDED');
  });

  it('continues live from the page’s cursor: what happened since arrives once, nothing from the page again', async () => {
    const page = await alice.events.history.query({ sessionId });
    expect(page.cursor).toBeTruthy();
    // Between reading the page and subscribing (the browser's gap), the agent runs another command.
    await agent.exec.run.mutate({ sessionId, command: ['sh', '-c', 'echo history-marker-2'] });
    const seen: StreamedEvent[] = [];
    const sub = alice.events.subscribe.subscribe(
      { sessionId, cursor: page.cursor ?? undefined },
      { onData: (e) => seen.push(e.data as StreamedEvent) },
    );
    try {
      await until(() => seen.some((e) => e.type === 'exec.exited'), 'the second command on the stream');
      const known = new Set(page.events.map((e) => e.id));
      expect(seen.filter((e) => known.has(e.id))).toEqual([]);
      expect(seen.some((e) => e.type === 'gap')).toBe(false);
      const outputs = seen.filter((e) => e.type === 'exec.output').map((e) => e.data);
      expect(outputs.join('')).toBe('history-marker-2\n');
      expect(new Set(seen.map((e) => e.id)).size).toBe(seen.length);
    } finally {
      sub.unsubscribe();
    }
    // The page read after it holds both commands, and still no watcher comings and goings.
    const after = await alice.events.history.query({ sessionId });
    expect(after.events.filter((e) => e.type === 'exec.started')).toHaveLength(2);
    expect(after.events.some((e) => e.type === 'watcher.joined' || e.type === 'watcher.left')).toBe(false);
  });
});
