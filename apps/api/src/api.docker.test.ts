import { createStudioClient, type StudioClient, StudioClientError } from '@studio/client';
import { signSessionToken } from '@studio/policy';
import { afterAll, describe, expect, it } from 'vitest';
import { JWT_SECRET, type TestApi } from './testing/api-fixture.ts';
import { dockerApiTest, dockerSkip, dockerTestBackend } from './testing/docker-api.ts';

// The real API on loopback, the real DockerBackend and image, through @studio/client and raw HTTP.
// Every sandbox is labelled studio.test=api and destroyed in afterAll.

const IMAGE = 'studio-sandbox:latest';
const backend = dockerTestBackend;
const skip = dockerSkip;
const test = dockerApiTest('api');

async function refusal(p: Promise<unknown>): Promise<StudioClientError> {
  try {
    await p;
  } catch (error) {
    if (error instanceof StudioClientError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe.skipIf(skip !== undefined)(`API on Docker${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let t: TestApi;
  let alice: StudioClient;
  let aliceToken: string;
  let bobToken: string;
  let sessionId: string;

  test.beforeAll(async ({ api, alice: a, bob: b }) => {
    t = api;
    aliceToken = a.token;
    bobToken = b.token;
    alice = a.client;
    sessionId = (await alice.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 512 } })).id;
  });

  afterAll(async () => {});

  it('creates a running, labelled sandbox', async () => {
    const s = await alice.sessions.get.query({ sessionId });
    expect(s).toMatchObject({ state: 'running', backend: 'docker', image: IMAGE });
    const [info] = await backend.list({ labels: { 'studio.session': sessionId } });
    expect(info?.labels).toMatchObject({
      'studio.session': sessionId,
      'studio.owner': (await alice.auth.me.query()).id,
      'studio.instance': 'api-test',
      'studio.test': 'api',
    });
    const stats = await alice.sessions.stats.query({ sessionId });
    expect(stats.stats?.memoryLimitBytes).toBe(512 * 1024 * 1024);
    expect((await alice.backends.list.query())[0]).toMatchObject({ name: 'docker', available: true });
  });

  it('writes, reads, lists, renames and removes files', async () => {
    await alice.files.mkdir.mutate({ sessionId, path: 'src/lib', createParents: true });
    await alice.files.write.mutate({ sessionId, path: 'src/lib/a.txt', content: 'héllo\n' });
    expect(await alice.files.read.query({ sessionId, path: 'src/lib/a.txt' })).toEqual({
      path: 'src/lib/a.txt',
      encoding: 'utf8',
      content: 'héllo\n',
      size: 7,
    });
    const bytes = Buffer.from([0, 1, 2, 255, 254, 10]);
    await alice.files.write.mutate({
      sessionId,
      path: 'bin.dat',
      content: bytes.toString('base64'),
      encoding: 'base64',
    });
    const back = await alice.files.read.query({ sessionId, path: 'bin.dat', encoding: 'base64' });
    expect(Buffer.from(back.content, 'base64')).toEqual(bytes);
    expect((await refusal(alice.files.read.query({ sessionId, path: 'bin.dat' }))).code).toBe(
      'FILE_NOT_TEXT',
    );
    const root = await alice.files.list.query({ sessionId });
    expect(root.map((e) => [e.name, e.type]).sort()).toEqual(
      expect.arrayContaining([
        ['bin.dat', 'file'],
        ['src', 'directory'],
      ]),
    );
    await alice.files.rename.mutate({ sessionId, from: 'src/lib/a.txt', to: 'src/b.txt' });
    expect((await alice.files.list.query({ sessionId, path: 'src' })).map((e) => e.path).sort()).toEqual([
      'src/b.txt',
      'src/lib',
    ]);
    expect(
      (await refusal(alice.files.rename.mutate({ sessionId, from: 'bin.dat', to: 'src/b.txt' }))).code,
    ).toBe('ALREADY_EXISTS');
    await alice.files.remove.mutate({ sessionId, path: 'src', recursive: true });
    expect((await refusal(alice.files.read.query({ sessionId, path: 'src/b.txt' }))).code).toBe('NOT_FOUND');
    // The sandbox sees what the API wrote, as its user.
    const run = await alice.exec.run.mutate({ sessionId, command: ['sh', '-c', 'stat -c %u:%s bin.dat'] });
    expect(run.stdout).toBe('1000:6\n');
  });

  it('runs commands with exit code, stdin, env, cwd, timeout and output cap', async () => {
    const ok = await alice.exec.run.mutate({
      sessionId,
      command: ['sh', '-c', 'cat; echo "$GREETING" >&2; pwd; exit 3'],
      stdin: 'in\n',
      env: { GREETING: 'hi' },
    });
    expect(ok).toMatchObject({
      exitCode: 3,
      stdout: 'in\n/workspace\n',
      stderr: 'hi\n',
      timedOut: false,
      truncated: false,
    });
    expect(ok.durationMs).toBeGreaterThan(0);
    await alice.files.mkdir.mutate({ sessionId, path: 'sub' });
    expect((await alice.exec.run.mutate({ sessionId, command: ['pwd'], cwd: 'sub' })).stdout).toBe(
      '/workspace/sub\n',
    );
    const slow = await alice.exec.run.mutate({ sessionId, command: ['sleep', '30'], timeoutMs: 500 });
    expect(slow.timedOut).toBe(true);
    expect(slow.durationMs).toBeLessThan(10_000);
    const flood = await alice.exec.run.mutate({ sessionId, command: ['head', '-c', '3000000', '/dev/zero'] });
    expect(flood.truncated).toBe(true);
    const missing = await alice.exec.run.mutate({ sessionId, command: ['no-such-program'] });
    expect(missing.exitCode).toBe(127);
    expect(
      (await refusal(alice.exec.run.mutate({ sessionId, command: ['sh'], env: { LD_PRELOAD: '/x.so' } })))
        .code,
    ).toBe('INPUT_INVALID');
  });

  it('works over raw HTTP too', async () => {
    const auth = { authorization: `Bearer ${aliceToken}` };
    const w = await t.call('mutation', 'files.write', { sessionId, path: 'raw.txt', content: 'raw' }, auth);
    expect(w.status).toBe(200);
    const r = await t.call('query', 'files.read', { sessionId, path: 'raw.txt' }, auth);
    expect((r.body.result?.data as { content: string } | undefined)?.content).toBe('raw');
    const e = await t.call('mutation', 'exec.run', { sessionId, command: ['cat', 'raw.txt'] }, auth);
    expect((e.body.result?.data as { stdout: string } | undefined)?.stdout).toBe('raw');
  });

  describe('path attacks through every files procedure', () => {
    const bad = [
      '../etc/passwd',
      '/etc/passwd',
      '%2e%2e/etc/passwd',
      '..%2fetc%2fpasswd',
      '%252e%252e/etc',
      'a/../../etc',
      'a\u0000b',
      '..\\etc\\passwd',
      'C:/Windows',
      `${'a'.repeat(256)}`,
    ];
    const procs = (path: string) => [
      () => alice.files.list.query({ sessionId, path }),
      () => alice.files.read.query({ sessionId, path }),
      () => alice.files.write.mutate({ sessionId, path, content: 'x' }),
      () => alice.files.mkdir.mutate({ sessionId, path }),
      () => alice.files.remove.mutate({ sessionId, path }),
      () => alice.files.rename.mutate({ sessionId, from: path, to: 'ok-name' }),
      () => alice.files.rename.mutate({ sessionId, from: 'raw.txt', to: path }),
      () => alice.exec.run.mutate({ sessionId, command: ['pwd'], cwd: path }),
    ];

    it.each(bad)('refuses %j with a PATH_* code before touching the sandbox', async (path) => {
      for (const call of procs(path)) {
        const e = await refusal(call());
        expect(e.httpStatus).toBe(400);
        expect(e.code).toMatch(/^(PATH_|SEGMENT_TOO_LONG)/);
      }
    });

    it('refuses a symlink planted from inside the sandbox, on every procedure', async () => {
      const plant = await alice.exec.run.mutate({
        sessionId,
        command: ['sh', '-c', 'ln -s /etc x && ln -s /etc/passwd p && ln -s / rootlink && echo planted'],
      });
      expect(plant.stdout).toBe('planted\n');
      const attempts = [
        () => alice.files.read.query({ sessionId, path: 'x/passwd' }),
        () => alice.files.read.query({ sessionId, path: 'p' }),
        () => alice.files.read.query({ sessionId, path: 'rootlink/etc/shadow' }),
        () => alice.files.list.query({ sessionId, path: 'x' }),
        () => alice.files.write.mutate({ sessionId, path: 'x/pwned', content: 'x' }),
        () => alice.files.write.mutate({ sessionId, path: 'p', content: 'x' }),
        () => alice.files.mkdir.mutate({ sessionId, path: 'x/newdir' }),
        () => alice.files.remove.mutate({ sessionId, path: 'x/passwd' }),
        () => alice.files.rename.mutate({ sessionId, from: 'x/passwd', to: 'stolen' }),
        () => alice.files.rename.mutate({ sessionId, from: 'raw.txt', to: 'x/moved' }),
        () => alice.exec.run.mutate({ sessionId, command: ['pwd'], cwd: 'x' }),
      ];
      for (const attempt of attempts) {
        const e = await refusal(attempt());
        expect(['FORBIDDEN', 'NOT_FOUND', 'INVALID_INPUT']).toContain(e.code);
        expect(e.message).not.toContain('root:x:0:0');
      }
      // Reading the link itself as a name is fine; removing it removes the link, never its target.
      await alice.files.remove.mutate({ sessionId, path: 'p' });
      const check = await alice.exec.run.mutate({
        sessionId,
        command: ['sh', '-c', 'test -e /etc/passwd && test ! -e p && echo ok'],
      });
      expect(check.stdout).toBe('ok\n');
    });

    it('never escapes while sandbox code swaps a link in and out during reads and writes', async () => {
      await alice.exec.run.mutate({
        sessionId,
        command: ['sh', '-c', 'mkdir -p real && echo safe > real/passwd'],
      });
      const swapper = alice.exec.run.mutate({
        sessionId,
        command: [
          'sh',
          '-c',
          'end=$(($(date +%s)+4)); while [ $(date +%s) -lt $end ]; do ln -sfn /etc d; rm -f d; ln -sfn real d; rm -f d; mkdir -p d; rmdir d; done; echo done',
        ],
        timeoutMs: 20_000,
      });
      const seen = new Set<string>();
      const until = Date.now() + 3000;
      while (Date.now() < until) {
        const [read, write] = await Promise.allSettled([
          alice.files.read.query({ sessionId, path: 'd/passwd' }),
          alice.files.write.mutate({ sessionId, path: 'd/pwned', content: 'x' }),
        ]);
        if (read.status === 'fulfilled') {
          expect(read.value.content).toBe('safe\n');
          seen.add('read-ok');
        } else {
          seen.add((read.reason as StudioClientError).code);
        }
        seen.add(write.status === 'fulfilled' ? 'write-ok' : (write.reason as StudioClientError).code);
      }
      expect((await swapper).stdout).toBe('done\n');
      const etc = await alice.exec.run.mutate({
        sessionId,
        command: ['sh', '-c', 'test ! -e /etc/pwned && echo clean'],
      });
      expect(etc.stdout).toBe('clean\n');
      expect(seen.size).toBeGreaterThan(0);
    });
  });

  it("another user's session id is NOT_FOUND", async () => {
    const bob = createStudioClient({ url: t.url, token: bobToken });
    expect((await refusal(bob.files.read.query({ sessionId, path: 'raw.txt' }))).code).toBe('NOT_FOUND');
    expect((await refusal(bob.exec.run.mutate({ sessionId, command: ['id'] }))).code).toBe('NOT_FOUND');
    expect((await refusal(bob.sessions.destroy.mutate({ sessionId }))).code).toBe('NOT_FOUND');
    const raw = await t.call('query', 'sessions.get', { sessionId }, { authorization: `Bearer ${bobToken}` });
    expect(raw.status).toBe(404);
    expect((await alice.sessions.get.query({ sessionId })).state).toBe('running');
  });

  it('refuses forged, expired and tampered JWTs and revoked API tokens on procedures', async () => {
    const me = await alice.auth.me.query();
    const key = new TextEncoder().encode(JWT_SECRET);
    const forged = await signSessionToken(
      { userId: me.id, sessionId: 'ses_aaaaaaaaaaaaaaaaaaaa', projectPath: '' },
      new TextEncoder().encode('not-the-server-secret-0123456789abcdef'),
    );
    const expired = await signSessionToken(
      { userId: me.id, sessionId: 'ses_aaaaaaaaaaaaaaaaaaaa', projectPath: '' },
      key,
      {
        now: new Date(Date.now() - 5 * 3600_000),
        lifetimeMs: 3600_000,
      },
    );
    const [h, p, s] = aliceToken.split('.') as [string, string, string];
    const tampered = `${h}.${p.slice(0, -2)}${p.endsWith('A') ? 'B' : 'A'}${p.slice(-1)}.${s}`;
    const { token: apiToken, id } = await alice.tokens.create.mutate({ name: 'agent' });
    expect(
      (await t.call('query', 'sessions.list', undefined, { authorization: `Bearer ${apiToken}` })).status,
    ).toBe(200);
    await alice.tokens.revoke.mutate({ id });
    const cases: [string, string][] = [
      [forged, 'TOKEN_INVALID'],
      [expired, 'TOKEN_EXPIRED'],
      [tampered, 'TOKEN_INVALID'],
      [apiToken, 'TOKEN_REVOKED'],
    ];
    for (const [token, code] of cases) {
      const r = await t.call(
        'mutation',
        'exec.run',
        { sessionId, command: ['id'] },
        { authorization: `Bearer ${token}` },
      );
      expect(r.status).toBe(401);
      expect(r.body.error?.data.studioCode).toBe(code);
      const viaClient = createStudioClient({ url: t.url, token });
      expect((await refusal(viaClient.files.list.query({ sessionId }))).code).toBe(code);
    }
  });

  it('refuses oversized inputs with clear codes', async () => {
    const max = t.app.env.policy.files.maxFileBytes;
    const big = await refusal(
      alice.files.write.mutate({ sessionId, path: 'big.txt', content: 'x'.repeat(max + 1) }),
    );
    expect([big.code, big.httpStatus]).toEqual(['INPUT_TOO_LARGE', 413]);
    const b64 = Buffer.alloc(max + 1).toString('base64');
    const big64 = await refusal(
      alice.files.write.mutate({ sessionId, path: 'big.bin', content: b64, encoding: 'base64' }),
    );
    expect(big64.code).toBe('INPUT_TOO_LARGE');
    const stdin = await refusal(
      alice.exec.run.mutate({ sessionId, command: ['cat'], stdin: 'x'.repeat(2 * 1024 * 1024) }),
    );
    expect(stdin.code).toBe('INPUT_TOO_LARGE');
    const args = await refusal(
      alice.exec.run.mutate({ sessionId, command: Array.from({ length: 300 }, () => 'a') }),
    );
    expect(args.code).toBe('INPUT_TOO_LARGE');
    await alice.exec.run.mutate({
      sessionId,
      command: ['sh', '-c', `head -c ${max + 10} /dev/zero > huge.bin`],
    });
    const read = await refusal(alice.files.read.query({ sessionId, path: 'huge.bin', encoding: 'base64' }));
    expect([read.code, read.httpStatus]).toEqual(['FILE_TOO_LARGE', 413]);
  });

  it('stops and starts a session keeping its workspace, and destroy removes the sandbox', async () => {
    const s = await alice.sessions.create.mutate({ image: IMAGE });
    await alice.files.write.mutate({ sessionId: s.id, path: 'keep.txt', content: 'kept' });
    expect((await alice.sessions.stop.mutate({ sessionId: s.id })).state).toBe('stopped');
    expect((await refusal(alice.files.read.query({ sessionId: s.id, path: 'keep.txt' }))).code).toBe(
      'INVALID_STATE',
    );
    expect((await alice.sessions.start.mutate({ sessionId: s.id })).state).toBe('running');
    expect((await alice.files.read.query({ sessionId: s.id, path: 'keep.txt' })).content).toBe('kept');
    expect((await alice.sessions.destroy.mutate({ sessionId: s.id })).state).toBe('destroyed');
    expect(await backend.list({ labels: { 'studio.session': s.id } })).toEqual([]);
    const audit = await t.app.deps.store.listAudit({ action: 'session.destroy' });
    expect(audit.some((e) => e.target === s.id && e.outcome === 'success')).toBe(true);
  });

  it('rate-limits logins (raw HTTP)', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) {
      statuses.push(
        (await t.call('mutation', 'auth.login', { username: 'alice', password: 'wrong-guess' })).status,
      );
    }
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(401));
    expect(statuses[10]).toBe(429);
  });
});
