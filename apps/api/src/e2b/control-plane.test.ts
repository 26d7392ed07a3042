import { createServer, request } from 'node:http';
import { createStudioClient } from '@studio/client';
import { createRateLimiter } from '@studio/policy';
import { AuthenticationError, RateLimitError, Sandbox, SandboxError, SandboxNotFoundError } from 'e2b';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../core/ids.ts';
import { ADMIN_PASSWORD, startTestApi, type TestApi } from '../testing/api-fixture.ts';
import { FakeBackend } from '../testing/fake-backend.ts';
import { e2bSandboxId, sessionIdOfSandbox } from './e2b-ids.ts';

// The E2B control plane, driven by the unmodified SDK (in this process) against the real API with the fake
// backend; the compatibility suite (compat/) drives it from outside the repo against real backends.

describe('E2B control plane (fake backend)', () => {
  const backend = new FakeBackend();
  let t: TestApi;
  let key: string;
  let alice: ReturnType<typeof createStudioClient>;
  const opts = () => ({ apiKey: key, apiUrl: `${t.url}/e2b`, sandboxUrl: `${t.url}/e2b/envd` });

  beforeAll(async () => {
    // Many creates in a minute here: the per-user create rate is not what these tests are about.
    t = await startTestApi({
      backends: [backend],
      createLimiter: createRateLimiter({ limit: 1000, windowMs: 60_000 }),
    });
    const admin = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
    await admin.users.create.mutate({ username: 'alice', password: 'alice-password-1' });
    alice = createStudioClient({ url: t.url, token: await t.login('alice', 'alice-password-1') });
    key = (await alice.tokens.create.mutate({ name: 'e2b' })).token;
  });
  afterAll(async () => {
    await t?.close();
  });

  it('maps session ids to DNS-label sandbox ids and back', () => {
    const id = newId('ses_');
    const sandboxId = e2bSandboxId(id);
    expect(sandboxId).toMatch(/^[0-9a-f]{32}$/);
    expect(sessionIdOfSandbox(sandboxId)).toBe(id);
    expect(sessionIdOfSandbox('Not-an-id')).toBeUndefined();
  });

  it('creates, describes, lists by metadata, times out and kills a sandbox', async () => {
    const sbx = await Sandbox.create({ ...opts(), metadata: { job: 'a' }, timeoutMs: 120_000 });
    expect(sbx.sandboxId).toMatch(/^[0-9a-f]{32}$/);
    const info = await sbx.getInfo();
    expect(info).toMatchObject({ sandboxId: sbx.sandboxId, metadata: { job: 'a' }, state: 'running' });
    expect(info.endAt.getTime() - Date.now()).toBeGreaterThan(100_000);
    // The session is Studio's, owned by the token's user.
    const sessions = await alice.sessions.list.query();
    expect(sessions.map((s) => e2bSandboxId(s.id))).toContain(sbx.sandboxId);

    const matching = await Sandbox.list({ ...opts(), query: { metadata: { job: 'a' } } }).nextItems();
    expect(matching.map((s) => s.sandboxId)).toEqual([sbx.sandboxId]);
    const none = await Sandbox.list({ ...opts(), query: { metadata: { job: 'b' } } }).nextItems();
    expect(none).toEqual([]);

    await sbx.setTimeout(30_000);
    const later = await sbx.getInfo();
    expect(later.endAt.getTime() - Date.now()).toBeLessThan(31_000);

    expect(await Sandbox.kill(sbx.sandboxId, opts())).toBe(true);
    expect(await Sandbox.kill(sbx.sandboxId, opts())).toBe(false);
    await expect(Sandbox.getInfo(sbx.sandboxId, opts())).rejects.toBeInstanceOf(SandboxNotFoundError);
  });

  it('kills a sandbox whose timeout ran out', async () => {
    const sbx = await Sandbox.create({ ...opts(), timeoutMs: 1_000 });
    const end = Date.now() + 10_000;
    while (
      Date.now() < end &&
      (await Sandbox.list(opts()).nextItems()).some((s) => s.sandboxId === sbx.sandboxId)
    ) {
      await new Promise((r) => setTimeout(r, 200));
    }
    await expect(Sandbox.getInfo(sbx.sandboxId, opts())).rejects.toBeInstanceOf(SandboxNotFoundError);
  });

  it('pauses instead of killing when the timeout runs out with onTimeout: pause', async () => {
    const sbx = await Sandbox.create({ ...opts(), timeoutMs: 1_000, lifecycle: { onTimeout: 'pause' } });
    const end = Date.now() + 15_000;
    while (Date.now() < end && (await Sandbox.getInfo(sbx.sandboxId, opts())).state !== 'paused') {
      await new Promise((r) => setTimeout(r, 200));
    }
    expect((await Sandbox.getInfo(sbx.sandboxId, opts())).state).toBe('paused');
    const back = await Sandbox.connect(sbx.sandboxId, { ...opts(), timeoutMs: 60_000 });
    expect((await back.getInfo()).state).toBe('running');
    await back.kill();
  });

  it('pauses and connects to resume, keeping metadata; connect extends the deadline only', async () => {
    const sbx = await Sandbox.create({ ...opts(), metadata: { keep: 'me' }, timeoutMs: 60_000 });
    expect(await Sandbox.pause(sbx.sandboxId, opts())).toBe(true);
    expect(await Sandbox.pause(sbx.sandboxId, opts())).toBe(false);
    expect((await Sandbox.getInfo(sbx.sandboxId, opts())).state).toBe('paused');
    const paused = await Sandbox.list({ ...opts(), query: { state: ['paused'] } }).nextItems();
    expect(paused.map((s) => s.sandboxId)).toContain(sbx.sandboxId);
    const again = await Sandbox.connect(sbx.sandboxId, { ...opts(), timeoutMs: 90_000 });
    const info = await again.getInfo();
    expect(info).toMatchObject({ state: 'running', metadata: { keep: 'me' } });
    await Sandbox.connect(sbx.sandboxId, { ...opts(), timeoutMs: 10_000 });
    expect((await again.getInfo()).endAt.getTime() - Date.now()).toBeGreaterThan(60_000);
    await again.kill();
  });

  it("leaves a session made in Studio to Studio's rules: connect sets no deadline, setTimeout pauses it", async () => {
    const session = await alice.sessions.create.mutate({});
    const sandboxId = e2bSandboxId(session.id);
    const sbx = await Sandbox.connect(sandboxId, { ...opts(), timeoutMs: 1_000 });
    expect((await sbx.commands.run('echo still here')).stdout).toBe('still here\n');
    // Past the timeout connect asked for: an E2B deadline would have ended it by now.
    await new Promise((r) => setTimeout(r, 2_500));
    expect((await alice.sessions.get.query({ sessionId: session.id })).state).toBe('running');
    await sbx.setTimeout(1_000);
    const end = Date.now() + 15_000;
    while (
      Date.now() < end &&
      (await alice.sessions.get.query({ sessionId: session.id })).state !== 'paused'
    ) {
      await new Promise((r) => setTimeout(r, 200));
    }
    // Paused, not destroyed: the person's workspace is kept.
    expect((await alice.sessions.get.query({ sessionId: session.id })).state).toBe('paused');
    await alice.sessions.destroy.mutate({ sessionId: session.id });
  });

  it('pages lists with x-next-token', async () => {
    const made = await Promise.all(
      [1, 2, 3].map(() => Sandbox.create({ ...opts(), metadata: { page: 'p' } })),
    );
    const paginator = Sandbox.list({ ...opts(), limit: 2, query: { metadata: { page: 'p' } } });
    const first = await paginator.nextItems();
    expect(first).toHaveLength(2);
    expect(paginator.hasNext).toBe(true);
    const second = await paginator.nextItems();
    expect(second).toHaveLength(1);
    expect(paginator.hasNext).toBe(false);
    expect(new Set([...first, ...second].map((s) => s.sandboxId))).toEqual(
      new Set(made.map((s) => s.sandboxId)),
    );
    await Promise.all(made.map((s) => s.kill()));
  });

  it("answers with the SDK's error classes: bad key, unknown sandbox and template, the session limit", async () => {
    await expect(Sandbox.create({ ...opts(), apiKey: 'sst_wrong' })).rejects.toBeInstanceOf(
      AuthenticationError,
    );
    await expect(Sandbox.connect('0'.repeat(32), opts())).rejects.toBeInstanceOf(SandboxNotFoundError);
    const unknown = await Sandbox.create('no-such-template', opts()).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(SandboxError);
    expect(String((unknown as Error).message)).toMatch(/^404: .*no-such-template/);
    const five = await Promise.all([1, 2, 3, 4, 5].map(() => Sandbox.create(opts())));
    const sixth = await Sandbox.create(opts()).catch((e: unknown) => e);
    expect(sixth).toBeInstanceOf(RateLimitError);
    expect(String((sixth as Error).message)).toMatch(/5/);
    await Promise.all(five.map((s) => s.kill()));
  });

  it('routes envd by the E2b-Sandbox-Id header: commands with create-time envs, files, a signed download URL', async () => {
    const sbx = await Sandbox.create({ ...opts(), envs: { FROM_CREATE: 'yes' } });
    const run = await sbx.commands.run('echo "$FROM_CREATE"');
    expect(run.stdout.trim()).toBe('yes');
    await sbx.files.write('note.txt', 'hello');
    expect(await sbx.files.read('note.txt')).toBe('hello');
    // A fixed E2B_SANDBOX_URL: the SDK resolves /files against it, so the URL names no sandbox; its signature does.
    const url = await sbx.downloadUrl('note.txt');
    expect(new URL(url).pathname).toBe('/files');
    const got = await fetch(url);
    expect(got.status).toBe(200);
    expect(await got.text()).toBe('hello');
    const forged = new URL(url);
    forged.searchParams.set('signature', 'v1_forged');
    expect((await fetch(forged)).status).toBe(401);
    // Another token of the same sandbox is not enough: envd wants the sandbox's own access token.
    const other = await fetch(`${t.url}/e2b/envd/filesystem.Filesystem/Stat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'e2b-sandbox-id': sbx.sandboxId, 'x-access-token': key },
      body: JSON.stringify({ path: 'note.txt' }),
    });
    expect(other.status).toBe(401);
    await sbx.kill();
    const gone = await fetch(`${t.url}/e2b/envd/filesystem.Filesystem/Stat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'e2b-sandbox-id': sbx.sandboxId },
      body: JSON.stringify({ path: 'note.txt' }),
    });
    expect(gone.status).toBe(404);
    expect(await gone.json()).toMatchObject({ code: 'not_found' });
  });

  it("refuses an E2B write while a person holds control, with Studio's message", async () => {
    const sbx = await Sandbox.create(opts());
    const sessionId = sessionIdOfSandbox(sbx.sandboxId) as string;
    await alice.sessions.takeControl.mutate({ sessionId });
    const refused = await sbx.files.write('x.txt', 'x').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(Error);
    expect(String((refused as Error).message)).toMatch(/has taken control/);
    await alice.sessions.releaseControl.mutate({ sessionId });
    await sbx.files.write('x.txt', 'x');
    await sbx.kill();
  });

  it('records E2B calls as the API token: audit log and live events', async () => {
    const sbx = await Sandbox.create(opts());
    const sessionId = sessionIdOfSandbox(sbx.sandboxId) as string;
    const abort = new AbortController();
    const events = t.app.deps.events.subscribe(sessionId, undefined, abort.signal);
    await sbx.commands.run('echo audited');
    const seen: { type: string; actor: { kind: string } | null }[] = [];
    for await (const e of events) {
      const event = e as unknown as { type: string; actor: { kind: string } | null };
      seen.push(event);
      if (event.type === 'exec.exited') break;
    }
    abort.abort();
    expect(seen.find((e) => e.type === 'exec.started')?.actor?.kind).toBe('token');
    const { tokenId } = await t.app.deps.auth.authenticate(key);
    const audit = await t.app.deps.store.listAudit({ action: 'e2b.create' });
    expect(audit.find((a) => a.target === sessionId)).toMatchObject({
      outcome: 'success',
      details: { tokenId, sandboxId: sbx.sandboxId },
    });
    await sbx.kill();
    expect(
      (await t.app.deps.store.listAudit({ action: 'e2b.kill' })).some((a) => a.target === sessionId),
    ).toBe(true);
  });

  it('serves envd and ports by host name on the preview listener; a private sandbox wants its traffic token', async () => {
    const preview = new URL(t.api.previewUrl as string);
    const viaHost = (host: string, path: string, headers: Record<string, string> = {}) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(
          { host: '127.0.0.1', port: preview.port, path, method: 'GET', headers: { host, ...headers } },
          (res) => {
            let body = '';
            res.on('data', (c: Buffer) => {
              body += c.toString();
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end();
      });
    const server = createServer((_req, res) => res.end('from the sandbox'));
    // A port previews may reach (3000-9999): the fake backend's sandbox is this host.
    let port = 0;
    for (let candidate = 7000 + Math.floor(Math.random() * 2000); port === 0; candidate++) {
      port = await new Promise<number>((r) => {
        server.once('error', () => r(0));
        server.listen(candidate, '127.0.0.1', () => r(candidate));
      });
    }
    try {
      const sbx = await Sandbox.create(opts());
      const domain = `localhost:${preview.port}`;
      expect(sbx.getHost(port)).toBe(`${port}-${sbx.sandboxId}.${domain}`);
      expect((await viaHost(`49983-${sbx.sandboxId}.${domain}`, '/health')).status).toBe(204);
      const unauth = await viaHost(`49983-${sbx.sandboxId}.${domain}`, '/files?path=x');
      expect(unauth.status).toBe(401);
      const page = await viaHost(sbx.getHost(port), '/');
      expect(page).toEqual({ status: 200, body: 'from the sandbox' });
      // The preview port rules still hold for E2B hosts.
      const blocked = await viaHost(`5432-${sbx.sandboxId}.${domain}`, '/');
      expect(blocked.status).toBe(401);
      expect(blocked.body).toMatch(/5432/);
      await sbx.kill();

      const res = await fetch(`${t.url}/e2b/sandboxes`, {
        method: 'POST',
        headers: { 'x-api-key': key, 'content-type': 'application/json' },
        body: JSON.stringify({ templateID: 'base', network: { allowPublicTraffic: false } }),
      });
      const made = (await res.json()) as { sandboxID: string; trafficAccessToken: string };
      expect(made.trafficAccessToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const host = `${port}-${made.sandboxID}.${domain}`;
      expect((await viaHost(host, '/')).status).toBe(401);
      expect(await viaHost(host, '/', { 'e2b-traffic-access-token': made.trafficAccessToken })).toEqual({
        status: 200,
        body: 'from the sandbox',
      });
      await Sandbox.kill(made.sandboxID, opts());
      expect((await viaHost(host, '/')).status).toBe(401);
    } finally {
      server.close();
    }
  });

  it('refuses to pause or change the timeout while a person holds control', async () => {
    const sbx = await Sandbox.create(opts());
    const sessionId = sessionIdOfSandbox(sbx.sandboxId) as string;
    await alice.sessions.takeControl.mutate({ sessionId });
    const pause = await Sandbox.pause(sbx.sandboxId, opts()).catch((e: unknown) => e);
    expect(pause).toBeInstanceOf(SandboxError);
    expect(String((pause as Error).message)).toMatch(/^423: .*has taken control/);
    await expect(sbx.setTimeout(10_000)).rejects.toThrow(/has taken control/);
    await alice.sessions.releaseControl.mutate({ sessionId });
    await sbx.kill();
  });

  it('refuses what Studio does not offer with a message naming it', async () => {
    const r = await fetch(`${t.url}/e2b/sandboxes`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ templateID: 'base', volumeMounts: [{ name: 'v', path: '/data' }] }),
    });
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({
      code: 400,
      message: expect.stringMatching(/volumes are not supported/),
    });
    const none = await fetch(`${t.url}/e2b/sandboxes`, { method: 'POST' });
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ code: 401, message: expect.stringMatching(/X-API-KEY/) });
  });
});
