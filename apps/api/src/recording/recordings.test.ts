import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createStudioClient, openTerminal, type StudioClient, type StudioTerminal } from '@studio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ADMIN_PASSWORD, codeOf, startTestApi, TEST_DATA_DIR, type TestApi } from '../testing/api-fixture.ts';
import { FakeBackend } from '../testing/fake-backend.ts';

// Session recording through the API with the fake backend (a real PTY from the agent): a terminal's output and
// an exec land in the recording, `recordings.list/get` serve them to the owner only, names are checked, a
// destroyed session's recording is gone, and the operator's switch turns it all off.

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000) {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function runInTerminal(t: TestApi, token: string, sessionId: string, command: string, expect: string) {
  const term: StudioTerminal = openTerminal({ url: t.url, token, sessionId, WebSocket: WebSocket as never });
  let text = '';
  const decoder = new TextDecoder();
  term.onData((c) => {
    text += decoder.decode(c, { stream: true });
  });
  await term.ready;
  term.resize(100, 30);
  term.write(`${command}\n`);
  await until(() => text.includes(expect), `"${expect}" in the terminal`);
  term.close();
}

describe('recordings (fake backend)', () => {
  const backend = new FakeBackend();
  let t: TestApi;
  let alice: StudioClient;
  let bob: StudioClient;
  let aliceToken: string;

  beforeAll(async () => {
    t = await startTestApi({ backends: [backend] });
    const admin = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
    await admin.users.create.mutate({ username: 'alice', password: 'alice-password-1' });
    await admin.users.create.mutate({ username: 'bob', password: 'bob-password-12' });
    aliceToken = await t.login('alice', 'alice-password-1');
    alice = createStudioClient({ url: t.url, token: aliceToken });
    bob = createStudioClient({ url: t.url, token: await t.login('bob', 'bob-password-12') });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("records a terminal's output and an exec, serves them to the owner, and keeps them after the session ends", async () => {
    const { id: sessionId } = await alice.sessions.create.mutate({ image: 'studio-sandbox:latest' });
    await runInTerminal(t, aliceToken, sessionId, 'echo rec-marker-$((6*7))', 'rec-marker-42');
    await alice.exec.run.mutate({ sessionId, command: ['echo', 'exec-marker'] });
    let listing = await alice.recordings.list.query({ sessionId });
    await until(async () => {
      listing = await alice.recordings.list.query({ sessionId });
      return listing.files.some((f) => f.name === 'terminal-1.cast' && (f.durationSec ?? 0) > 0);
    }, 'the cast in the listing');
    expect(listing).toMatchObject({ enabled: true, stopped: false, maxBytes: 16 * 1024 * 1024 });
    expect(listing.files.map((f) => f.name)).toEqual(['events.jsonl', 'terminal-1.cast']);
    expect(listing.files[1]).toMatchObject({
      kind: 'terminal',
      openedBy: { kind: 'user', name: 'alice' },
    });
    expect(listing.bytes).toBe(listing.files.reduce((n, f) => n + f.size, 0));

    const cast = (await alice.recordings.get.query({ sessionId, file: 'terminal-1.cast' })).text;
    const [header, ...entries] = cast
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as unknown);
    expect(header).toMatchObject({ version: 2, width: 80, height: 24 });
    const out = (entries as [number, string, string][]).filter((e) => e[1] === 'o').map((e) => e[2]);
    expect(out.join('')).toContain('rec-marker-42');
    expect(entries).toContainEqual([expect.any(Number), 'r', '100x30']);
    // Input is not recorded: the command as typed ($((6*7))) appears only as the shell echoed it.

    const log = (await alice.recordings.get.query({ sessionId, file: 'events.jsonl' })).text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; actor: { name: string } | null; command?: string[] });
    expect(log.map((e) => e.type)).toEqual(
      expect.arrayContaining([
        'terminal.opened',
        'terminal.closed',
        'exec.started',
        'exec.output',
        'exec.exited',
      ]),
    );
    expect(log.find((e) => e.type === 'exec.started')).toMatchObject({
      actor: { name: 'alice' },
      command: ['echo', 'exec-marker'],
    });

    // Another user's session: NOT_FOUND, as every session procedure.
    expect(await codeOf(bob.recordings.list.query({ sessionId }))).toBe('NOT_FOUND');
    expect(await codeOf(bob.recordings.get.query({ sessionId, file: 'events.jsonl' }))).toBe('NOT_FOUND');
    // Names are the recorder's own: a path is refused before the disk is touched; an unknown one is NOT_FOUND.
    expect(await codeOf(alice.recordings.get.query({ sessionId, file: '../../jwt-secret' }))).toBe(
      'INPUT_INVALID',
    );
    expect(await codeOf(alice.recordings.get.query({ sessionId, file: 'terminal-7.cast' }))).toBe(
      'NOT_FOUND',
    );

    // Destroyed: still replayable by its owner (policy recording.keepDays, 7 by default), still not by others.
    await alice.sessions.destroy.mutate({ sessionId });
    expect((await alice.recordings.list.query({ sessionId })).files.map((f) => f.name)).toEqual([
      'events.jsonl',
      'terminal-1.cast',
    ]);
    expect(await codeOf(bob.recordings.list.query({ sessionId }))).toBe('NOT_FOUND');
  });
});

describe('recordings kept for no days', () => {
  it('deletes the recording with the session', async () => {
    const t = await startTestApi({
      backends: [new FakeBackend()],
      env: { STUDIO_POLICY: JSON.stringify({ recording: { keepDays: 0 } }) },
    });
    try {
      const admin = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
      const { id: sessionId } = await admin.sessions.create.mutate({ image: 'studio-sandbox:latest' });
      await admin.exec.run.mutate({ sessionId, command: ['true'] });
      await until(async () => (await admin.recordings.list.query({ sessionId })).files.length > 0, 'the log');
      await admin.sessions.destroy.mutate({ sessionId });
      await until(() => !existsSync(join(TEST_DATA_DIR, 'recordings', sessionId)), 'the folder to go');
    } finally {
      await t.close();
    }
  });
});

describe('recordings switched off by the operator', () => {
  let t: TestApi;
  it('records nothing and says so', async () => {
    t = await startTestApi({
      backends: [new FakeBackend()],
      env: { STUDIO_POLICY: JSON.stringify({ recording: { enabled: false } }) },
    });
    try {
      const admin = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
      const { id: sessionId } = await admin.sessions.create.mutate({ image: 'studio-sandbox:latest' });
      await admin.exec.run.mutate({ sessionId, command: ['true'] });
      expect(await admin.recordings.list.query({ sessionId })).toMatchObject({ enabled: false, files: [] });
      expect(existsSync(join(TEST_DATA_DIR, 'recordings', sessionId))).toBe(false);
    } finally {
      await t.close();
    }
  });
});
