import type { ExecStreamEvent } from '@studio/client';
import { createStudioClient, type StudioClient, streamExec } from '@studio/client';
import { EventSource } from 'eventsource';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, startTestApi, type TestApi } from '../testing/api-fixture.ts';
import { FakeBackend } from '../testing/fake-backend.ts';

// Issue 17 item 2 against the real API over HTTP with the fake backend (a real agent process): a streamed exec
// read over SSE whose connection drops mid-output resumes after the last event, with nothing lost and nothing
// twice, and the command ran once; exec.run retried with its idempotency key runs once.

const IMAGE = 'studio-sandbox:latest';

/** One SSE event as the wire carries it. */
interface WireEvent {
  event: string;
  id: string | undefined;
  data: string;
}

/**
 * Reads exec.stream over raw SSE until `stopAfter` data events (then drops the connection, as a network blip
 * does) or the stream returns. `lastEventId` goes in the Last-Event-ID header, as an EventSource sends it.
 */
async function readStream(
  t: TestApi,
  token: string,
  input: { execId: string; token: string },
  options: { lastEventId?: string; stopAfter?: number } = {},
): Promise<{ events: WireEvent[]; status: number }> {
  const abort = new AbortController();
  const res = await fetch(`${t.url}/trpc/exec.stream?input=${encodeURIComponent(JSON.stringify(input))}`, {
    headers: {
      accept: 'text/event-stream',
      authorization: `Bearer ${token}`,
      ...(options.lastEventId ? { 'last-event-id': options.lastEventId } : {}),
    },
    signal: abort.signal,
  });
  const events: WireEvent[] = [];
  if (!res.body) return { events, status: res.status };
  const decoder = new TextDecoder();
  let buffer = '';
  let data = 0;
  try {
    for await (const chunk of res.body) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const e: WireEvent = { event: 'message', id: undefined, data: '' };
        for (const line of block.split('\n')) {
          const i = line.indexOf(':');
          const [k, v] = i < 0 ? [line, ''] : [line.slice(0, i), line.slice(i + 1).replace(/^ /, '')];
          if (k === 'event') e.event = v;
          else if (k === 'id') e.id = v;
          else if (k === 'data') e.data += v;
        }
        events.push(e);
        if (e.event === 'message') data++;
        if (e.event === 'return' || e.event === 'serialized-error') return { events, status: res.status };
        if (options.stopAfter !== undefined && data >= options.stopAfter) {
          abort.abort();
          return { events, status: res.status };
        }
      }
    }
  } catch (error) {
    if (!abort.signal.aborted) throw error;
  }
  return { events, status: res.status };
}

const messages = (events: WireEvent[]) =>
  events
    .filter((e) => e.event === 'message')
    .map((e) => ({ id: e.id, data: JSON.parse(e.data) as ExecStreamEvent }));
const stdoutOf = (list: { data: ExecStreamEvent }[]) =>
  list.map((m) => (m.data.type === 'stdout' ? m.data.data : '')).join('');

describe('exactly-once execs (fake backend)', () => {
  const backend = new FakeBackend();
  let t: TestApi;
  let token: string;
  let alice: StudioClient;
  let bob: StudioClient;
  let sessionId: string;

  beforeAll(async () => {
    t = await startTestApi({ backends: [backend] });
    const admin = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
    await admin.users.create.mutate({ username: 'alice', password: 'alice-password-1' });
    await admin.users.create.mutate({ username: 'bob', password: 'bob-password-12' });
    token = await t.login('alice', 'alice-password-1');
    alice = createStudioClient({ url: t.url, token, EventSource: EventSource as never });
    bob = createStudioClient({ url: t.url, token: await t.login('bob', 'bob-password-12') });
    sessionId = (await alice.sessions.create.mutate({ image: IMAGE })).id;
  });
  afterAll(async () => {
    await t?.close();
  });

  const linesIn = async (file: string) =>
    (
      await alice.exec.run.mutate({ sessionId, command: ['sh', '-c', `cat ${file} 2>/dev/null || true`] })
    ).stdout
      .split('\n')
      .filter(Boolean);

  // Appends one line to `file` when it runs, then prints `n` numbered lines slowly.
  const counted = (file: string, n: number, sleep = '0.02') => [
    'sh',
    '-c',
    `echo ran >> ${file}; i=1; while [ $i -le ${n} ]; do echo line-$i; i=$((i+1)); sleep ${sleep}; done`,
  ];
  const expected = (n: number) => Array.from({ length: n }, (_, i) => `line-${i + 1}\n`).join('');

  it('resumes a dropped stream after its last event: nothing lost, nothing twice, run once', async () => {
    const started = await alice.exec.start.mutate({ sessionId, command: counted('ran-1.txt', 30) });
    const input = { execId: started.execId, token: started.token };
    const first = await readStream(t, token, input, { stopAfter: 6 });
    const firstMessages = messages(first.events);
    expect(firstMessages).toHaveLength(6);
    // Every event carries an id (tracked), so the EventSource sends it back as Last-Event-ID.
    expect(firstMessages.map((m) => m.id)).toEqual(['1', '2', '3', '4', '5', '6']);
    expect(firstMessages[0]?.data).toEqual({ type: 'started', execId: started.execId });
    await new Promise((r) => setTimeout(r, 150)); // output goes on while nobody reads
    const second = await readStream(t, token, input, { lastEventId: '6' });
    const secondMessages = messages(second.events);
    expect(second.events.at(-1)?.event).toBe('return');
    expect(Number(secondMessages[0]?.id)).toBe(7);
    const all = [...firstMessages, ...secondMessages];
    expect(all.map((m) => Number(m.id))).toEqual(all.map((_, i) => i + 1));
    expect(all.filter((m) => m.data.type === 'started')).toHaveLength(1);
    expect(stdoutOf(all)).toBe(expected(30));
    expect(all.at(-1)?.data).toMatchObject({ type: 'exit', exitCode: 0 });
    expect(await linesIn('ran-1.txt')).toEqual(['ran']);

    // Right after the end a reconnect still gets the exit (the events linger), and starts nothing.
    const again = await readStream(t, token, input, { lastEventId: String(all.length - 1) });
    expect(messages(again.events).map((m) => m.data.type)).toEqual(['exit']);
    const past = await readStream(t, token, input, { lastEventId: '999' });
    expect(past.events.at(-1)?.event).toBe('serialized-error');
    expect(JSON.parse(past.events.at(-1)?.data ?? '{}')).toMatchObject({
      data: { studioCode: 'INPUT_INVALID' },
    });
    expect(await linesIn('ran-1.txt')).toEqual(['ran']);
  });

  it('a second reader takes over from one the server still thinks is connected', async () => {
    const started = await alice.exec.start.mutate({ sessionId, command: counted('ran-2.txt', 20, '0.03') });
    const input = { execId: started.execId, token: started.token };
    // The first reader stays connected (not aborted) but stops reading after 3 events, like a half-open socket.
    const res = await fetch(`${t.url}/trpc/exec.stream?input=${encodeURIComponent(JSON.stringify(input))}`, {
      headers: { accept: 'text/event-stream', authorization: `Bearer ${token}` },
    });
    const reader = res.body?.getReader();
    await reader?.read();
    const second = await readStream(t, token, input, { lastEventId: '1' });
    expect(second.events.at(-1)?.event).toBe('return');
    const got = messages(second.events);
    expect(got[0]?.id).toBe('2');
    expect(stdoutOf(got)).toBe(expected(20));
    await reader?.cancel().catch(() => undefined);
    expect(await linesIn('ran-2.txt')).toEqual(['ran']);
  });

  it('streamExec survives its SSE connection dropping mid-output (the link reconnects by itself)', async () => {
    // The transport cuts the first exec.stream response after some bytes, as a network blip does; the
    // EventSource reconnects with Last-Event-ID and the API resumes there.
    let streams = 0;
    const dropping = (async (input: string | URL | Request, init?: RequestInit) => {
      const res = await fetch(input, init);
      if (!String(input).includes('exec.stream') || streams++ > 0 || !res.body) return res;
      const source = res.body.getReader();
      let seen = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const { done, value } = await source.read();
          if (done) return controller.close();
          controller.enqueue(value);
          seen += (new TextDecoder().decode(value).match(/line-/g) ?? []).length;
          if (seen >= 5) {
            await source.cancel();
            controller.error(new TypeError('network connection lost'));
          }
        },
      });
      return new Response(body, { status: res.status, headers: res.headers });
    }) as typeof fetch;
    const client = createStudioClient({
      url: t.url,
      token,
      EventSource: EventSource as never,
      fetch: dropping,
    });
    const seen: ExecStreamEvent[] = [];
    const done = new Promise<void>((resolve, reject) => {
      streamExec(
        client,
        { sessionId, command: counted('ran-3.txt', 25) },
        { onData: (e) => seen.push(e), onComplete: resolve, onError: reject },
      );
    });
    await done;
    expect(streams).toBeGreaterThanOrEqual(2); // it did reconnect
    expect(seen.filter((e) => e.type === 'started')).toHaveLength(1);
    expect(stdoutOf(seen.map((data) => ({ data })))).toBe(expected(25));
    expect(seen.at(-1)).toMatchObject({ type: 'exit', exitCode: 0 });
    expect(await linesIn('ran-3.txt')).toEqual(['ran']);
  });

  it('exec.run with the same idempotency key runs once; another input with it is refused', async () => {
    const input = {
      sessionId,
      command: ['sh', '-c', 'echo ran >> ran-run.txt; sleep 0.3; wc -l < ran-run.txt'],
      idempotencyKey: 'key-0001-alpha',
    };
    // Two at once (the second waits for the first), then a third after it ended.
    const [a, b] = await Promise.all([alice.exec.run.mutate(input), alice.exec.run.mutate(input)]);
    const c = await alice.exec.run.mutate(input);
    expect(a.stdout.trim()).toBe('1');
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    expect(await linesIn('ran-run.txt')).toEqual(['ran']);

    await expect(
      alice.exec.run.mutate({ ...input, command: ['sh', '-c', 'echo other >> ran-run.txt'] }),
    ).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    // Without a key, or with another one, it runs again.
    await alice.exec.run.mutate({ ...input, idempotencyKey: 'key-0002-beta' });
    expect(await linesIn('ran-run.txt')).toEqual(['ran', 'ran']);
    // Another user's same key is their own key: it neither gets alice's result nor blocks her.
    await expect(bob.exec.run.mutate(input)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await linesIn('ran-run.txt')).toEqual(['ran', 'ran']);
    await expect(alice.exec.run.mutate({ ...input, idempotencyKey: 'short' })).rejects.toMatchObject({
      code: 'INPUT_INVALID',
    });
  });

  it('exec.start with the same idempotency key starts once and returns the same exec', async () => {
    const input = { sessionId, command: counted('ran-start.txt', 3), idempotencyKey: 'start-key-0001' };
    const first = await alice.exec.start.mutate(input);
    const second = await alice.exec.start.mutate(input);
    expect(second).toEqual(first);
    const read = await readStream(t, token, { execId: first.execId, token: first.token });
    expect(stdoutOf(messages(read.events))).toBe(expected(3));
    expect(await linesIn('ran-start.txt')).toEqual(['ran']);
  });
});
