import { createStudioClient, type StudioClient, StudioClientError } from '@studio/client';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { StreamedEvent } from '../realtime/event-bus.ts';
import type { TestApi } from '../testing/api-fixture.ts';
import { dockerApiTest, dockerSkip, ES } from '../testing/docker-api.ts';

// The take-control lock (issue 8) against the real API on loopback and the real DockerBackend: a person (a
// login) takes control, an API token's changes get HUMAN_HAS_CONTROL (409) until released. Sandboxes are
// labelled studio.test=control and destroyed.

const IMAGE = 'studio-sandbox:latest';
const test = dockerApiTest('control');
const skip = dockerSkip;

async function until(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a refusal');
    },
    (e: unknown) => {
      expect(e).toBeInstanceOf(StudioClientError);
      return e as StudioClientError;
    },
  );

describe.skipIf(skip !== undefined)(`take control on Docker${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let t: TestApi;
  let alice: StudioClient;
  let aliceByToken: StudioClient;
  let apiToken = '';
  let bob: StudioClient;
  let aliceId = '';
  let sessionId = '';

  test.beforeAll(async ({ api, alice: a, bob: b }) => {
    t = api;
    alice = a.client;
    apiToken = (await alice.tokens.create.mutate({ name: 'agent' })).token;
    aliceByToken = createStudioClient({ url: t.url, token: apiToken, EventSource: ES });
    bob = b.client;
    aliceId = (await alice.auth.me.query()).id;
    sessionId = (await alice.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 256 } })).id;
  });

  it('blocks API tokens from changing a session while a person holds control; reads and the person go on', async () => {
    const seen: StreamedEvent[] = [];
    const sub = alice.events.subscribe.subscribe(
      { sessionId },
      { onData: (e) => seen.push(e.data as StreamedEvent) },
    );
    try {
      await until(() => seen.some((e) => e.type === 'watcher.joined'), 'watcher.joined');
      await aliceByToken.files.write.mutate({ sessionId, path: 'a.txt', content: 'before' });
      expect((await alice.sessions.get.query({ sessionId })).control).toBeNull();

      // A token cannot take control; another user cannot take or release it.
      const byToken = await refusal(aliceByToken.sessions.takeControl.mutate({ sessionId }));
      expect(byToken).toMatchObject({ code: 'FORBIDDEN', httpStatus: 403 });
      expect(byToken.message).toMatch(/signed in/);
      expect(await refusal(bob.sessions.takeControl.mutate({ sessionId }))).toMatchObject({
        code: 'NOT_FOUND',
      });

      const taken = await alice.sessions.takeControl.mutate({ sessionId });
      expect(taken.control).toMatchObject({ heldBy: 'alice' });
      expect(Date.parse(taken.control?.since ?? '')).not.toBeNaN();
      expect((await aliceByToken.sessions.list.query()).find((s) => s.id === sessionId)?.control).toEqual(
        taken.control,
      );
      expect(await refusal(bob.sessions.releaseControl.mutate({ sessionId }))).toMatchObject({
        code: 'NOT_FOUND',
      });
      expect(await refusal(aliceByToken.sessions.releaseControl.mutate({ sessionId }))).toMatchObject({
        code: 'FORBIDDEN',
      });

      const write = await refusal(
        aliceByToken.files.write.mutate({ sessionId, path: 'a.txt', content: 'x' }),
      );
      expect(write).toMatchObject({ code: 'HUMAN_HAS_CONTROL', httpStatus: 409, trpcCode: 'CONFLICT' });
      expect(write.message).toMatch(/control\.released/);
      expect(
        await refusal(aliceByToken.exec.run.mutate({ sessionId, command: ['touch', 'x'] })),
      ).toMatchObject({ code: 'HUMAN_HAS_CONTROL', httpStatus: 409 });
      expect(await refusal(aliceByToken.files.mkdir.mutate({ sessionId, path: 'd' }))).toMatchObject({
        code: 'HUMAN_HAS_CONTROL',
      });
      expect(await refusal(aliceByToken.files.remove.mutate({ sessionId, path: 'a.txt' }))).toMatchObject({
        code: 'HUMAN_HAS_CONTROL',
      });
      let streamError: unknown;
      const stream = aliceByToken.exec.stream.subscribe(
        { sessionId, command: ['true'] },
        {
          onData: () => undefined,
          onError: (e) => {
            streamError = e;
          },
        },
      );
      try {
        await until(() => streamError !== undefined, 'the exec.stream refusal');
      } finally {
        stream.unsubscribe();
      }
      expect(streamError).toMatchObject({ code: 'HUMAN_HAS_CONTROL' });
      // Reads stay allowed.
      expect((await aliceByToken.files.read.query({ sessionId, path: 'a.txt' })).content).toBe('before');
      expect((await aliceByToken.files.list.query({ sessionId })).map((e) => e.path)).toContain('a.txt');

      // The terminal is input: refused to the token, with the code in the close reason.
      const socket = new WebSocket(`${t.url.replace(/^http/, 'ws')}/terminal`);
      const closed = new Promise<{ code: number; reason: string }>((resolve) =>
        socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
      );
      socket.on('open', () => socket.send(JSON.stringify({ type: 'auth', token: apiToken, sessionId })));
      expect(await closed).toMatchObject({
        code: 1008,
        reason: expect.stringContaining('HUMAN_HAS_CONTROL'),
      });

      // The person is never blocked.
      await alice.files.write.mutate({ sessionId, path: 'a.txt', content: 'by the person' });
      expect((await alice.exec.run.mutate({ sessionId, command: ['cat', 'a.txt'] })).stdout).toBe(
        'by the person',
      );

      const released = await alice.sessions.releaseControl.mutate({ sessionId });
      expect(released.control).toBeNull();
      await aliceByToken.files.write.mutate({ sessionId, path: 'a.txt', content: 'after' });
      expect((await aliceByToken.exec.run.mutate({ sessionId, command: ['cat', 'a.txt'] })).stdout).toBe(
        'after',
      );

      await until(() => seen.some((e) => e.type === 'control.released'), 'control.released');
      const control = seen.filter((e) => e.type === 'control.taken' || e.type === 'control.released');
      expect(control).toMatchObject([
        { type: 'control.taken', actor: { kind: 'user', userId: aliceId, name: 'alice' } },
        { type: 'control.released', actor: { kind: 'user', userId: aliceId, name: 'alice' } },
      ]);
    } finally {
      sub.unsubscribe();
    }
  });
});
