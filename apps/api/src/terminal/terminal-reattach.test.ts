import { createServer } from 'node:http';
import {
  createStudioClient,
  openTerminal,
  type StudioTerminal,
  type TerminalServerMessage,
} from '@studio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ADMIN_PASSWORD, startTestApi, type TestApi } from '../testing/api-fixture.ts';
import { FakeBackend } from '../testing/fake-backend.ts';
import { attachTerminal } from './terminal.ts';

// Issue 17 item 2 for terminals, against the real API with the fake backend (a real PTY from the agent): a
// terminal whose socket drops keeps its shell, and a reconnect with its terminalId gets the same shell back
// (the same `$$`) with the output it missed, once; another user's terminal id is NOT_FOUND.

async function until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function record(term: StudioTerminal) {
  const out = { text: '', messages: [] as TerminalServerMessage[] };
  const decoder = new TextDecoder();
  term.onData((c) => {
    out.text += decoder.decode(c, { stream: true });
  });
  term.onMessage((m) => out.messages.push(m));
  return out;
}

describe('terminal reattach (fake backend)', () => {
  const backend = new FakeBackend();
  let t: TestApi;
  let aliceToken: string;
  let bobToken: string;
  let sessionId: string;
  const opened: StudioTerminal[] = [];
  const open = (options: { token?: string; terminalId?: string; offset?: number } = {}) => {
    const term = openTerminal({
      url: t.url,
      token: options.token ?? aliceToken,
      sessionId,
      WebSocket: WebSocket as never,
      ...(options.terminalId !== undefined ? { terminalId: options.terminalId } : {}),
      ...(options.offset !== undefined ? { offset: options.offset } : {}),
    });
    opened.push(term);
    return term;
  };

  beforeAll(async () => {
    t = await startTestApi({ backends: [backend] });
    const admin = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
    await admin.users.create.mutate({ username: 'alice', password: 'alice-password-1' });
    await admin.users.create.mutate({ username: 'bob', password: 'bob-password-12' });
    aliceToken = await t.login('alice', 'alice-password-1');
    bobToken = await t.login('bob', 'bob-password-12');
    const alice = createStudioClient({ url: t.url, token: aliceToken });
    sessionId = (await alice.sessions.create.mutate({ image: 'studio-sandbox:latest' })).id;
  });
  afterAll(async () => {
    for (const term of opened) term.close();
    await t?.close();
  });

  const pidIn = (text: string, tag: string) => new RegExp(`${tag}-(\\d+)-end`).exec(text)?.[1];

  it('a dropped terminal is reattached to the same shell, with what it missed replayed once', async () => {
    const first = open();
    const out1 = record(first);
    await first.ready;
    const terminalId = first.terminalId;
    expect(terminalId).toMatch(/^trm_/);
    first.write('echo "pid-$$-end"\n');
    await until(() => pidIn(out1.text, 'pid') !== undefined, 'the first pid');
    const pid = pidIn(out1.text, 'pid');
    // Output that arrives while no socket is attached.
    first.write('sleep 0.4; echo "later-$$-end"\n');
    await until(() => out1.text.includes('sleep 0.4'), 'the echo of the command');
    const offset = first.offset;
    (first.socket as unknown as WebSocket).terminate(); // a dropped connection, not a clean close
    await first.closed;
    await new Promise((r) => setTimeout(r, 700));

    const second = open({ terminalId, offset });
    const out2 = record(second);
    await second.ready;
    const ready = out2.messages.find((m) => m.type === 'ready');
    expect(ready).toMatchObject({ terminalId, offset });
    await until(() => pidIn(out2.text, 'later') !== undefined, 'the replayed output');
    expect(pidIn(out2.text, 'later')).toBe(pid);
    expect(out2.text.split('later-').length - 1).toBe(1); // replayed once
    expect(out2.text).not.toContain('pid-'); // nothing from before `offset`
    second.write('echo "again-$$-end"\n');
    await until(() => pidIn(out2.text, 'again') !== undefined, 'the pid after reattaching');
    expect(pidIn(out2.text, 'again')).toBe(pid);

    // A new terminal is another shell (so the check above can tell them apart).
    const other = open();
    const out3 = record(other);
    await other.ready;
    other.write('echo "new-$$-end"\n');
    await until(() => pidIn(out3.text, 'new') !== undefined, 'a new shell');
    expect(pidIn(out3.text, 'new')).not.toBe(pid);
    expect(other.terminalId).not.toBe(terminalId);
  });

  it('a sign-in that must change its password is refused a terminal; its API token is not', async () => {
    const admin = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
    const carol = await admin.users.create.mutate({ username: 'carol', password: 'carol-password-1' });
    const carolClient = createStudioClient({ url: t.url, token: await t.login('carol', 'carol-password-1') });
    const carolSession = (await carolClient.sessions.create.mutate({ image: 'studio-sandbox:latest' })).id;
    const { token } = await carolClient.tokens.create.mutate({ name: 'agent' });
    await admin.users.resetPassword.mutate({ userId: carol.id, password: 'carol-temporary-1' });
    const open = (credential: string) => {
      const term = openTerminal({
        url: t.url,
        token: credential,
        sessionId: carolSession,
        WebSocket: WebSocket as never,
      });
      opened.push(term);
      return term;
    };
    const gated = open(await t.login('carol', 'carol-temporary-1'));
    const messages = record(gated).messages;
    expect(await gated.closed).toMatchObject({ code: 1008 });
    expect(messages).toContainEqual(
      expect.objectContaining({ type: 'error', code: 'PASSWORD_CHANGE_REQUIRED' }),
    );
    const viaToken = open(token);
    await viaToken.ready;
    viaToken.close();
  });

  it("another user's terminal id is NOT_FOUND, and so is an unknown one", async () => {
    const mine = open();
    await mine.ready;
    const theirs = open({ token: bobToken, terminalId: mine.terminalId as string });
    const messages = record(theirs).messages;
    expect(await theirs.closed).toMatchObject({ code: 1008 });
    expect(messages).toContainEqual(expect.objectContaining({ type: 'error', code: 'NOT_FOUND' }));
    const unknown = open({ terminalId: `trm_${'A'.repeat(22)}` });
    const unknownMessages = record(unknown).messages;
    expect(await unknown.closed).toMatchObject({ code: 1008 });
    expect(unknownMessages).toContainEqual(expect.objectContaining({ code: 'NOT_FOUND' }));
    // Bob's attempt did not disturb Alice's terminal.
    const out = record(mine);
    mine.write('echo "still-$$-end"\n');
    await until(() => pidIn(out.text, 'still') !== undefined, 'alice still served');
    // Closed on purpose (1000), the shell ends at once: nothing to reattach to.
    const id = mine.terminalId as string;
    mine.close();
    await mine.closed;
    const after = open({ terminalId: id });
    const afterMessages = record(after).messages;
    expect(await after.closed).toMatchObject({ code: 1008 });
    expect(afterMessages).toContainEqual(expect.objectContaining({ code: 'NOT_FOUND' }));
  });

  it('a second socket reattaching takes over; the first is closed with 4001', async () => {
    const first = open();
    await first.ready;
    const second = open({ terminalId: first.terminalId as string, offset: first.offset });
    await second.ready;
    expect(await first.closed).toMatchObject({ code: 4001 });
    const out = record(second);
    second.write('echo "taken-$$-end"\n');
    await until(() => pidIn(out.text, 'taken') !== undefined, 'the taken-over shell');
  });

  it('a dropped shell is closed when nobody reattaches within the window', async () => {
    // The same app's terminal endpoint on a server of its own, with a short window.
    const server = createServer();
    const endpoint = attachTerminal(server, t.app.deps, { reattachMs: 300 });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      const first = openTerminal({ url, token: aliceToken, sessionId, WebSocket: WebSocket as never });
      const out = record(first);
      await first.ready;
      first.write('echo "short-$$-end"\n');
      await until(() => pidIn(out.text, 'short') !== undefined, 'the shell');
      const pid = pidIn(out.text, 'short');
      (first.socket as unknown as WebSocket).terminate();
      await first.closed;
      await new Promise((r) => setTimeout(r, 800));
      const late = openTerminal({
        url,
        token: aliceToken,
        sessionId,
        WebSocket: WebSocket as never,
        terminalId: first.terminalId as string,
      });
      const messages = record(late).messages;
      expect(await late.closed).toMatchObject({ code: 1008 });
      expect(messages).toContainEqual(expect.objectContaining({ code: 'NOT_FOUND' }));
      // And the shell itself is gone, not only forgotten.
      const alice = createStudioClient({ url: t.url, token: aliceToken });
      const probe = async () =>
        (
          await alice.exec.run.mutate({
            sessionId,
            command: ['sh', '-c', `kill -0 ${pid} 2>/dev/null && ps -o pid,stat,args -p ${pid} || echo gone`],
          })
        ).stdout.trim();
      let state = await probe();
      for (let i = 0; i < 20 && state !== 'gone'; i++) {
        await new Promise((r) => setTimeout(r, 250));
        state = await probe();
      }
      expect(state).toBe('gone');
    } finally {
      endpoint.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
