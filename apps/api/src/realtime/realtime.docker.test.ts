import {
  createStudioClient,
  openTerminal,
  type StudioClient,
  StudioClientError,
  type StudioTerminal,
} from '@studio/client';
import { signSessionToken } from '@studio/policy';
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { ExecStreamEvent } from '../exec/exec-router.ts';
import { ADMIN_PASSWORD, JWT_SECRET, startTestApi, type TestApi } from '../testing/api-fixture.ts';
import { dockerApiTest, dockerSkip, dockerTestBackend, ES } from '../testing/docker-api.ts';
import type { StreamedEvent } from './event-bus.ts';

// The real-time half against the real API on loopback and the real DockerBackend: events.subscribe,
// exec.stream, and the terminal WebSocket. Every sandbox is labelled studio.test=realtime and destroyed.

const IMAGE = 'studio-sandbox:latest';
const RATE_LIMIT = 40;
const backend = dockerTestBackend;
const skip = dockerSkip;
const test = dockerApiTest('realtime', {
  env: { STUDIO_POLICY: JSON.stringify({ websocket: { messagesPerMinute: RATE_LIMIT } }) },
  terminalRecheckMs: 300,
});

async function until(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Subscribes and records everything the subscription yields. */
function record<T>(
  start: (handlers: { onData: (v: T) => void; onError: (e: unknown) => void; onComplete: () => void }) => {
    unsubscribe(): void;
  },
) {
  const seen: T[] = [];
  const state = { error: undefined as unknown, complete: false };
  const sub = start({
    onData: (v) => seen.push(v),
    onError: (e) => {
      state.error = e;
    },
    onComplete: () => {
      state.complete = true;
    },
  });
  return { seen, state, unsubscribe: () => sub.unsubscribe() };
}

function watch(client: StudioClient, sessionId: string, cursor?: string) {
  return record<StreamedEvent>((h) =>
    client.events.subscribe.subscribe(
      { sessionId, ...(cursor ? { cursor } : {}) },
      { ...h, onData: (e) => h.onData(e.data as StreamedEvent) },
    ),
  );
}

function rawSocket(url: string, origin?: string): WebSocket {
  return new WebSocket(`${url.replace(/^http/, 'ws')}/terminal`, origin ? { origin } : {});
}

function closeOf(socket: WebSocket): Promise<{ code: number; reason: string; error?: string }> {
  return new Promise((resolve) => {
    let error: string | undefined;
    socket.on('error', (e) => {
      error = e.message;
    });
    socket.on('close', (code, reason) =>
      resolve({ code, reason: reason.toString(), ...(error ? { error } : {}) }),
    );
  });
}

describe.skipIf(skip !== undefined)(`real-time API on Docker${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let t: TestApi;
  let alice: StudioClient;
  let aliceByToken: StudioClient;
  let bob: StudioClient;
  let aliceToken: string;
  let aliceId: string;
  let sessionId: string;
  const terminals: StudioTerminal[] = [];

  const term = (options: { sessionId?: string; token?: string } = {}) => {
    const t2 = openTerminal({
      url: t.url,
      token: options.token ?? aliceToken,
      sessionId: options.sessionId ?? sessionId,
      WebSocket: WebSocket as never,
    });
    terminals.push(t2);
    return t2;
  };
  const outputOf = (terminal: StudioTerminal) => {
    const text = { value: '' };
    const decoder = new TextDecoder();
    terminal.onData((c) => {
      text.value += decoder.decode(c, { stream: true });
    });
    return text;
  };

  test.beforeAll(async ({ api, alice: a, bob: b }) => {
    t = api;
    aliceToken = a.token;
    alice = a.client;
    const apiToken = await alice.tokens.create.mutate({ name: 'agent' });
    aliceByToken = createStudioClient({ url: t.url, token: apiToken.token, EventSource: ES });
    bob = b.client;
    aliceId = (await alice.auth.me.query()).id;
    sessionId = (await alice.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 512 } })).id;
  });

  afterAll(async () => {
    for (const x of terminals) x.close();
  });

  it('shows a second client what the first writes and runs, with actors; reconnects by cursor', async () => {
    const w = watch(alice, sessionId);
    await until(() => w.seen.some((e) => e.type === 'watcher.joined'), 'watcher.joined');
    await aliceByToken.files.write.mutate({ sessionId, path: 'live.txt', content: 'x' });
    await aliceByToken.files.rename.mutate({ sessionId, from: 'live.txt', to: 'live2.txt' });
    await aliceByToken.exec.run.mutate({ sessionId, command: ['echo', 'hello-events'] });
    await until(() => w.seen.some((e) => e.type === 'exec.exited'), 'exec.exited');
    const byType = (type: string) => w.seen.filter((e) => e.type === type);
    expect(byType('file.changed')).toMatchObject([
      { op: 'write', path: 'live.txt', actor: { kind: 'token', userId: aliceId, name: 'alice' } },
      { op: 'rename', path: 'live.txt', to: 'live2.txt' },
    ]);
    expect(byType('file.changed')[0]?.actor?.tokenId).toMatch(/^tok_/);
    expect(byType('exec.started')[0]).toMatchObject({ command: ['echo', 'hello-events'] });
    expect(
      byType('exec.output')
        .map((e) => (e.type === 'exec.output' ? e.data : ''))
        .join(''),
    ).toBe('hello-events\n');
    expect(byType('exec.exited')[0]).toMatchObject({ exitCode: 0, cancelled: false });
    expect(byType('watcher.joined')[0]?.actor).toEqual({ kind: 'user', userId: aliceId, name: 'alice' });
    expect(await aliceByToken.events.watchers.query({ sessionId })).toMatchObject([
      { via: 'events', actor: { kind: 'user', name: 'alice' } },
    ]);

    // Disconnect, miss two changes, reconnect with the last cursor: exactly the missed ones come first.
    const last = w.seen.at(-1)?.id ?? '';
    w.unsubscribe();
    await aliceByToken.files.mkdir.mutate({ sessionId, path: 'missed-dir' });
    await aliceByToken.files.remove.mutate({ sessionId, path: 'missed-dir' });
    const again = watch(alice, sessionId, last);
    await until(() => again.seen.filter((e) => e.type === 'file.changed').length >= 2, 'missed events');
    expect(again.seen.filter((e) => e.type === 'file.changed')).toMatchObject([
      { op: 'mkdir', path: 'missed-dir' },
      { op: 'remove', path: 'missed-dir' },
    ]);
    expect(again.seen.some((e) => e.type === 'gap')).toBe(false);
    again.unsubscribe();
    await until(() => false, 'the server to see the unsubscribe', 300).catch(() => undefined);

    // A cursor the server cannot honour (another process's) is an explicit gap.
    const stale = watch(alice, sessionId, 'deadbeef-5');
    await until(() => stale.seen.length > 0, 'gap');
    expect(stale.seen[0]).toMatchObject({ type: 'gap', missed: null });
    stale.unsubscribe();

    // Another user's session is NOT_FOUND.
    const spy = watch(bob, sessionId);
    await until(() => spy.state.error !== undefined, 'refusal');
    expect(spy.state.error).toBeInstanceOf(StudioClientError);
    expect((spy.state.error as StudioClientError).code).toBe('NOT_FOUND');
    expect(spy.seen).toEqual([]);
    spy.unsubscribe();
  });

  it('changes made inside the sandbox are events too (no actor), and the API’s own changes are not repeated', async () => {
    const w = watch(alice, sessionId);
    await until(() => w.seen.some((e) => e.type === 'watcher.joined'), 'watcher.joined');
    // The watch starts with the subscription; give it a moment to be in place.
    await new Promise((r) => setTimeout(r, 1000));
    await aliceByToken.exec.run.mutate({
      sessionId,
      command: ['sh', '-c', 'mkdir -p inside && echo 1 > inside/made.txt && echo 2 > top.txt'],
    });
    const changed = () => w.seen.filter((e) => e.type === 'file.changed');
    await until(() => changed().some((e) => e.type === 'file.changed' && e.path === 'top.txt'), 'top.txt');
    expect(changed().find((e) => e.type === 'file.changed' && e.path === 'top.txt')).toMatchObject({
      op: 'changed',
      actor: null,
    });
    expect(changed().some((e) => e.type === 'file.changed' && e.path === 'inside')).toBe(true);

    const before = changed().length;
    await alice.files.write.mutate({ sessionId, path: 'by-api.txt', content: 'x' });
    await new Promise((r) => setTimeout(r, 800));
    const after = changed().slice(before);
    expect(after).toMatchObject([
      { op: 'write', path: 'by-api.txt', actor: { kind: 'user', name: 'alice' } },
    ]);
    w.unsubscribe();
  });

  it('streams exec output and exit, takes stdin, and cancels by unsubscribing', async () => {
    const run = record<ExecStreamEvent>((h) =>
      alice.exec.stream.subscribe({ sessionId, command: ['sh', '-c', 'echo out; echo err >&2; exit 3'] }, h),
    );
    await until(() => run.seen.some((e) => e.type === 'exit') || run.state.error !== undefined, 'exit');
    expect(run.state.error).toBeUndefined();
    expect(run.seen[0]).toMatchObject({ type: 'started', execId: expect.stringMatching(/^exe_/) });
    const text = (s: string) =>
      run.seen
        .filter((e) => e.type === s)
        .map((e) => ('data' in e ? e.data : ''))
        .join('');
    expect(text('stdout')).toBe('out\n');
    expect(text('stderr')).toBe('err\n');
    expect(run.seen.at(-1)).toMatchObject({ type: 'exit', exitCode: 3, timedOut: false });
    run.unsubscribe();

    const cat = record<ExecStreamEvent>((h) =>
      alice.exec.stream.subscribe({ sessionId, command: ['cat'], keepStdinOpen: true }, h),
    );
    await until(() => cat.seen.length > 0, 'started');
    const execId = cat.seen[0]?.type === 'started' ? cat.seen[0].execId : '';
    const refused = await bob.exec.write.mutate({ execId, data: 'x' }).catch((e: StudioClientError) => e);
    expect(refused).toMatchObject({ code: 'NOT_FOUND' });
    await alice.exec.write.mutate({ execId, data: 'piped\n' });
    await alice.exec.closeStdin.mutate({ execId });
    await until(() => cat.seen.some((e) => e.type === 'exit'), 'cat exit');
    expect(cat.seen.filter((e) => e.type === 'stdout').map((e) => ('data' in e ? e.data : ''))).toEqual([
      'piped\n',
    ]);
    cat.unsubscribe();

    const foreign = record<ExecStreamEvent>((h) =>
      bob.exec.stream.subscribe({ sessionId, command: ['touch', 'bob-was-here'] }, h),
    );
    await until(() => foreign.state.error !== undefined, 'refusal');
    expect(foreign.state.error).toMatchObject({ code: 'NOT_FOUND' });
    expect(foreign.seen).toEqual([]);
    foreign.unsubscribe();

    const sleeper = record<ExecStreamEvent>((h) =>
      alice.exec.stream.subscribe({ sessionId, command: ['sleep', '987'] }, h),
    );
    await until(() => sleeper.seen.length > 0, 'sleep started');
    const running = async () =>
      (
        await alice.exec.run.mutate({
          sessionId,
          command: ['sh', '-c', 'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " "'],
        })
      ).stdout.includes('sleep 987');
    await until(() => false, 'nothing', 500).catch(() => undefined);
    expect(await running()).toBe(true);
    sleeper.unsubscribe();
    const end = Date.now() + 15_000;
    let alive = true;
    while (alive && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 200));
      alive = await running();
    }
    expect(alive).toBe(false);
  });

  it('terminal: echo and resize within bounds', async () => {
    const a = term();
    const out = outputOf(a);
    await a.ready;
    a.write('echo he""llo-term\n');
    await until(() => out.value.includes('hello-term'), 'echo');
    a.resize(120, 40);
    a.write('stty size\n');
    await until(() => out.value.includes('40 120'), 'stty size');
    const errors: string[] = [];
    a.onMessage((m) => {
      if (m.type === 'error') errors.push(m.code);
    });
    a.resize(100_000, 40);
    await until(() => errors.length > 0, 'resize refusal');
    expect(errors).toEqual(['LIMIT_EXCEEDED']);
    a.write('stty size\n');
    await until(() => out.value.split('40 120').length > 2, 'size unchanged');
    a.close();
  });

  it('terminal: refuses silence, bad and expired tokens, and foreign origins with 1008 / 403', async () => {
    const silent = rawSocket(t.url);
    expect(await closeOf(silent)).toMatchObject({ code: 1008 });

    const bad = rawSocket(t.url);
    bad.on('open', () => bad.send(JSON.stringify({ type: 'auth', token: 'not-a-token', sessionId })));
    expect(await closeOf(bad)).toMatchObject({ code: 1008 });

    const expired = await signSessionToken(
      { userId: aliceId, sessionId, projectPath: '' },
      new TextEncoder().encode(JWT_SECRET),
      { now: new Date(Date.now() - 5 * 3600_000), lifetimeMs: 3600_000 },
    );
    const old = rawSocket(t.url);
    old.on('open', () => old.send(JSON.stringify({ type: 'auth', token: expired, sessionId })));
    expect(await closeOf(old)).toMatchObject({ code: 1008 });

    const foreign = rawSocket(t.url, 'https://evil.example');
    const closed = await closeOf(foreign);
    expect(closed.error).toMatch(/403/);

    const bobToken = await t.login('bob', 'bob-password-12');
    const other = rawSocket(t.url);
    other.on('open', () => other.send(JSON.stringify({ type: 'auth', token: bobToken, sessionId })));
    expect(await closeOf(other)).toMatchObject({ code: 1008 });
  });

  it('terminal: a browser opens it with a 60 s socket token; signing out or revoking the token closes it', async () => {
    const browser = createStudioClient({ url: t.url, token: await t.login('alice', 'alice-password-1') });
    const ticket = await browser.auth.socketToken.mutate();
    expect(Date.parse(ticket.expiresAt) - Date.now()).toBeLessThanOrEqual(60_000);
    const viaTicket = term({ token: ticket.token });
    const out = outputOf(viaTicket);
    await viaTicket.ready;
    viaTicket.write('echo tic""ket-ok\n');
    await until(() => out.value.includes('ticket-ok'), 'echo through a socket-token terminal');
    const codes: string[] = [];
    viaTicket.onMessage((m) => {
      if (m.type === 'error') codes.push(m.code);
    });
    await browser.auth.logout.mutate();
    expect(await viaTicket.closed).toMatchObject({ code: 1008 });
    expect(codes).toEqual(['TOKEN_REVOKED']);
    // The ticket of an ended sign-in opens nothing.
    const again = term({ token: ticket.token });
    expect(await again.closed).toMatchObject({ code: 1008 });

    // API tokens send themselves; a socket token is only for sign-ins.
    const err = await aliceByToken.auth.socketToken.mutate().catch((e: StudioClientError) => e);
    expect(err).toMatchObject({ code: 'INVALID_STATE' });
    const made = await alice.tokens.create.mutate({ name: 'short-lived-terminal' });
    const viaApiToken = term({ token: made.token });
    await viaApiToken.ready;
    await alice.tokens.revoke.mutate({ id: made.id });
    expect(await viaApiToken.closed).toMatchObject({ code: 1008 });
  });

  it('terminal: input before auth never reaches the sandbox; oversized frames close', async () => {
    const early = rawSocket(t.url);
    early.on('open', () => {
      early.send(JSON.stringify({ type: 'input', data: 'touch /workspace/pwned\n' }));
      early.send(JSON.stringify({ type: 'auth', token: aliceToken, sessionId }));
    });
    expect(await closeOf(early)).toMatchObject({ code: 1008 });
    const a = term();
    const out = outputOf(a);
    await a.ready;
    a.write('ls /workspace/pwned || echo NO-PWN\n');
    await until(() => out.value.includes('NO-PWN\r\n'), 'ls');
    expect((await alice.exec.run.mutate({ sessionId, command: ['ls', '/workspace'] })).stdout).not.toMatch(
      /pwned/,
    );

    const big = term();
    await big.ready;
    big.write('x'.repeat(70 * 1024));
    expect((await big.closed).code).toBe(1009);
    a.close();
  });

  it('terminal: rate limit per session across sockets', async () => {
    const other = (await alice.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 256 } })).id;
    const a = term({ sessionId: other });
    const b = term({ sessionId: other });
    await Promise.all([a.ready, b.ready]);
    for (let i = 0; i < RATE_LIMIT / 2 + 5; i++) {
      if (a.socket.readyState === WebSocket.OPEN) a.write(':\n');
      if (b.socket.readyState === WebSocket.OPEN) b.write(':\n');
    }
    const [ca, cb] = await Promise.race([
      Promise.all([a.closed, b.closed]),
      Promise.all([a.closed, new Promise((r) => setTimeout(r, 3000))]),
      Promise.all([new Promise((r) => setTimeout(r, 3000)), b.closed]),
    ]);
    expect([ca, cb].some((c) => (c as { code?: number } | undefined)?.code === 1008)).toBe(true);
    await alice.sessions.destroy.mutate({ sessionId: other });
  });

  it('terminal: a `yes` flood to a client that never reads leaves server memory bounded', async () => {
    const a = term();
    await a.ready;
    global.gc?.();
    const before = process.memoryUsage();
    (a.socket as unknown as WebSocket).pause();
    a.write('yes yes-flood-line\n');
    await new Promise((r) => setTimeout(r, 6000));
    global.gc?.();
    const after = process.memoryUsage();
    const rssGrowth = after.rss - before.rss;
    const heapGrowth = after.heapUsed - before.heapUsed;
    console.info(
      `yes flood, 6 s: rss +${(rssGrowth / 1048576).toFixed(1)} MiB, heap +${(heapGrowth / 1048576).toFixed(1)} MiB`,
    );
    const metric = await t.api.registry.getSingleMetric('studio_terminal_dropped_bytes_total')?.get();
    const droppedBytes = metric?.values[0]?.value ?? 0;
    console.info(`yes flood: ${(droppedBytes / 1048576).toFixed(1)} MiB of PTY output dropped`);
    // The backpressure path ran: output was dropped instead of queued.
    expect(droppedBytes).toBeGreaterThan(0);
    expect(rssGrowth).toBeLessThan(200 * 1024 * 1024);
    expect(heapGrowth).toBeLessThan(100 * 1024 * 1024);
    a.close();
  });
  it('terminal: heartbeats drop a peer that does not answer pings', async () => {
    const h = await startTestApi({
      backends: [backend],
      labels: { 'studio.test': 'realtime' },
      env: { STUDIO_POLICY: JSON.stringify({ websocket: { heartbeatMs: 1000 } }) },
    });
    try {
      const token = await h.login('admin', ADMIN_PASSWORD);
      const admin = createStudioClient({ url: h.url, token });
      const sid = (await admin.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 256 } })).id;
      const live = openTerminal({ url: h.url, token, sessionId: sid, WebSocket: WebSocket as never });
      const mute = new WebSocket(`${h.url.replace(/^http/, 'ws')}/terminal`, { autoPong: false });
      mute.on('open', () => mute.send(JSON.stringify({ type: 'auth', token, sessionId: sid })));
      const muteClosed = closeOf(mute);
      await live.ready;
      expect((await muteClosed).code).toBe(1006);
      // The peer that answers pings is still there after several heartbeats.
      expect(live.socket.readyState).toBe(WebSocket.OPEN);
      live.close();
      await admin.sessions.destroy.mutate({ sessionId: sid });
    } finally {
      await h.close();
    }
  });
});
