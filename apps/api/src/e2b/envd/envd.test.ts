import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { createStudioClient } from '@studio/client';
import {
  CommandExitError,
  FileNotFoundError,
  FilesystemEventType,
  getSignature,
  InvalidArgumentError,
  NotFoundError,
  Sandbox,
  SandboxError,
} from 'e2b';
import { Sandbox as Sandbox210 } from 'e2b-2-10';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../../auth/auth.ts';
import { ADMIN_PASSWORD, startTestApi, type TestApi } from '../../testing/api-fixture.ts';
import { FakeBackend } from '../../testing/fake-backend.ts';
import { type EnvdTestServer, serveEnvd } from './envd-testing.ts';
import { Filesystem } from './gen/filesystem/filesystem_pb.ts';
import { Process, StartRequestSchema } from './gen/process/process_pb.ts';

// The envd API served by Studio, driven by the unmodified E2B SDK (2.51.0, and 2.10.1 for uploads) and by a plain
// Connect client, against the real API with the fake backend (its real agent runs commands on the host, in a
// temporary workspace: only harmless commands here).

const MAX_FILE = 64 * 1024;

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000) {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('envd on Studio (fake backend)', () => {
  const backend = new FakeBackend();
  let t: TestApi;
  let envd: EnvdTestServer;
  let sandbox: Sandbox;
  let alice: ReturnType<typeof createStudioClient>;
  let sessionId: string;

  const sdk = (options: { token?: string; version?: string } = {}) =>
    new (Sandbox as unknown as new (opts: Record<string, unknown>) => Sandbox)({
      sandboxId: envd.target.sandboxId,
      envdVersion: options.version ?? '0.5.7',
      envdAccessToken: options.token ?? envd.target.accessToken,
      sandboxUrl: envd.url,
      apiKey: 'e2b_unused',
    });
  const rpc = (options: { binary?: boolean; token?: string | null } = {}) => {
    const auth: Interceptor = (next) => (req) => {
      const token = options.token === undefined ? envd.target.accessToken : options.token;
      if (token !== null) req.header.set('X-Access-Token', token);
      return next(req);
    };
    const transport = createConnectTransport({
      baseUrl: envd.url,
      httpVersion: '1.1',
      useBinaryFormat: options.binary === true,
      interceptors: [auth],
    });
    return { process: createClient(Process, transport), fs: createClient(Filesystem, transport) };
  };

  beforeAll(async () => {
    t = await startTestApi({
      backends: [backend],
      env: { STUDIO_POLICY: JSON.stringify({ files: { maxFileBytes: MAX_FILE, maxListEntries: 50 } }) },
    });
    const admin = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
    await admin.users.create.mutate({ username: 'alice', password: 'alice-password-1' });
    alice = createStudioClient({ url: t.url, token: await t.login('alice', 'alice-password-1') });
    sessionId = (await alice.sessions.create.mutate({ image: 'studio-sandbox:latest' })).id;
    const { token } = await alice.tokens.create.mutate({ name: 'e2b' });
    const principal: Principal = await t.app.deps.auth.authenticate(token);
    envd = await serveEnvd(t.app, sessionId, principal, { envs: { FROM_CREATE: 'yes' }, keepAliveMs: 200 });
    sandbox = sdk();
  });
  afterAll(async () => {
    await envd?.close();
    await t?.close();
  });

  describe('authentication', () => {
    it('serves /health to anyone', async () => {
      expect((await fetch(`${envd.url}/health`)).status).toBe(204);
    });

    it('refuses RPCs without the access token, or with another', async () => {
      for (const token of [null, 'wrong-token']) {
        const err = await rpc({ token })
          .fs.stat({ path: '/workspace' })
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ConnectError);
        expect((err as ConnectError).code).toBe(Code.Unauthenticated);
      }
      await expect(sdk({ token: 'wrong' }).files.exists('x')).rejects.toThrow(/access token/);
    });

    it('takes signed /files URLs, refusing wrong and expired signatures', async () => {
      await sandbox.files.write('signed.txt', 'signed content');
      const url = (signature: string, extra = '') =>
        `${envd.url}/files?path=signed.txt&signature=${encodeURIComponent(signature)}${extra}`;
      const good = await getSignature({
        path: 'signed.txt',
        operation: 'read',
        user: undefined,
        envdAccessToken: envd.target.accessToken,
      });
      const res = await fetch(url(good.signature));
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('signed content');
      // The SDK's own signed URL, with an expiry.
      const download = await sandbox.downloadUrl('signed.txt', { useSignatureExpiration: 60 });
      expect(await (await fetch(download)).text()).toBe('signed content');
      // A write signature does not read, and an expired one is refused.
      const write = await getSignature({
        path: 'signed.txt',
        operation: 'write',
        user: undefined,
        envdAccessToken: envd.target.accessToken,
      });
      const wrong = await fetch(url(write.signature));
      expect(wrong.status).toBe(401);
      expect(await wrong.json()).toMatchObject({ code: 401, message: expect.stringMatching(/signature/) });
      const past = Math.floor(Date.now() / 1000) - 10;
      const expired = await getSignature({
        path: 'signed.txt',
        operation: 'read',
        user: undefined,
        envdAccessToken: envd.target.accessToken,
        expirationInSeconds: -10,
      });
      expect((await fetch(url(expired.signature, `&signature_expiration=${past}`))).status).toBe(401);
      expect((await fetch(`${envd.url}/files?path=signed.txt`)).status).toBe(401);
      // An upload through the SDK's signed upload URL.
      const upload = await sandbox.uploadUrl('uploaded-by-url.txt');
      const form = new FormData();
      form.append('file', new Blob(['via url']), 'uploaded-by-url.txt');
      expect((await fetch(upload, { method: 'POST', body: form })).status).toBe(200);
      expect(await sandbox.files.read('uploaded-by-url.txt')).toBe('via url');
    });
  });

  describe('process', () => {
    it('runs a command to its end: output, exit code, the create envs', async () => {
      const ok = await sandbox.commands.run('echo "hi $FROM_CREATE $MINE"; echo oops >&2', {
        envs: { MINE: 'm' },
      });
      expect(ok).toMatchObject({ exitCode: 0, stdout: 'hi yes m\n', stderr: 'oops\n' });
      const failed = await sandbox.commands.run('echo partial; exit 3').catch((e: unknown) => e);
      expect(failed).toBeInstanceOf(CommandExitError);
      expect((failed as CommandExitError).exitCode).toBe(3);
      expect((failed as CommandExitError).stdout).toBe('partial\n');
      expect((failed as CommandExitError).error).toBe('exit status 3');
    });

    it('keeps a process running after its stream ends; Connect by pid, List, kill', async () => {
      const handle = await sandbox.commands.run('echo started; sleep 30', { background: true });
      await until(() => handle.stdout.includes('started'), 'the first output');
      await handle.disconnect();
      const listed = await sandbox.commands.list();
      expect(listed).toContainEqual(
        expect.objectContaining({
          pid: handle.pid,
          cmd: '/bin/bash',
          args: ['-l', '-c', 'echo started; sleep 30'],
        }),
      );
      const again = await sandbox.commands.connect(handle.pid);
      expect(await sandbox.commands.kill(handle.pid)).toBe(true);
      const ended = await again.wait().catch((e: unknown) => e);
      expect(ended).toBeInstanceOf(CommandExitError);
      expect((ended as CommandExitError).exitCode).toBe(-1);
      expect(await sandbox.commands.kill(handle.pid)).toBe(false);
      await expect(sandbox.commands.connect(handle.pid)).rejects.toBeInstanceOf(NotFoundError);
      expect((await sandbox.commands.list()).map((p) => p.pid)).not.toContain(handle.pid);
    });

    it('sends keep-alives on an idle stream', async () => {
      const events = rpc().process.start(
        create(StartRequestSchema, { process: { cmd: 'sleep', args: ['1'] }, stdin: false }),
        { headers: { 'Keepalive-Ping-Interval': '1' } },
      );
      const seen: string[] = [];
      for await (const e of events) {
        seen.push(e.event?.event.case ?? 'none');
        if (e.event?.event.case === 'end') break;
      }
      expect(seen[0]).toBe('start');
      expect(seen.at(-1)).toBe('end');
    });

    it('writes stdin until it is closed', async () => {
      const handle = await sandbox.commands.run('cat', { background: true, stdin: true });
      await handle.sendStdin('hello ');
      await sandbox.commands.sendStdin(handle.pid, 'world\n');
      await handle.closeStdin();
      const result = await handle.wait();
      expect(result.stdout).toBe('hello world\n');
      // Without stdin: true, stdin is closed at once (cat ends by itself) and input is refused.
      const closed = await sandbox.commands.run('cat; sleep 5', { background: true });
      await expect(closed.sendStdin('x')).rejects.toThrow(/stdin of process \d+ is closed/);
      await closed.kill();
    });

    it('runs a PTY that takes input and resizes', async () => {
      let output = '';
      const decoder = new TextDecoder();
      const pty = await sandbox.pty.create({
        cols: 80,
        rows: 24,
        onData: (data) => {
          output += decoder.decode(data, { stream: true });
        },
      });
      await sandbox.pty.resize(pty.pid, { cols: 100, rows: 30 });
      await sandbox.pty.sendInput(pty.pid, new TextEncoder().encode('stty size; exit 0\n'));
      const result = await pty.wait();
      expect(result.exitCode).toBe(0);
      expect(output).toContain('30 100');
      await expect(sandbox.pty.resize(pty.pid, { cols: 10, rows: 10 })).rejects.toBeInstanceOf(NotFoundError);
    });

    it('resolves cwd under the workspace, maps /home/user to it and refuses root', async () => {
      await sandbox.files.makeDir('/home/user/wd/inner');
      const relative = await sandbox.commands.run('pwd', { cwd: 'wd/inner' });
      const home = await sandbox.commands.run('pwd', { cwd: '/home/user/wd' });
      expect(relative.stdout.trim().endsWith('/wd/inner')).toBe(true);
      expect(home.stdout.trim().endsWith('/wd')).toBe(true);
      await expect(sandbox.commands.run('id', { user: 'root' })).rejects.toThrow(/no root user/);
      await expect(sandbox.commands.run('id', { user: 'root' })).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(sandbox.commands.run('pwd', { cwd: '/etc' })).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(sandbox.commands.run('true', { envs: { LD_PRELOAD: '/x.so' } })).rejects.toBeInstanceOf(
        InvalidArgumentError,
      );
    });
  });

  describe('take-over lock', () => {
    it('refuses every change while a person holds control, with Studio’s message', async () => {
      await alice.sessions.takeControl.mutate({ sessionId });
      try {
        const run = await sandbox.commands.run('true').catch((e: unknown) => e);
        expect(run).toBeInstanceOf(SandboxError);
        expect((run as Error).message).toMatch(/has taken control/);
        await expect(sandbox.files.write('locked.txt', 'x')).rejects.toThrow(/has taken control/);
        await expect(sandbox.files.makeDir('locked')).rejects.toThrow(/has taken control/);
        await expect(sandbox.files.remove('signed.txt')).rejects.toThrow(/has taken control/);
        // Reads stay allowed.
        expect(await sandbox.files.exists('signed.txt')).toBe(true);
      } finally {
        await alice.sessions.releaseControl.mutate({ sessionId });
      }
      await sandbox.commands.run('true');
    });
  });

  describe('filesystem', () => {
    it('maps paths: /home/user and relative to /workspace; others refused', async () => {
      const written = await sandbox.files.write('/home/user/paths/a.txt', 'abc');
      expect(written).toMatchObject({ path: '/workspace/paths/a.txt', name: 'a.txt', type: 'file' });
      const info = await sandbox.files.getInfo('paths/a.txt');
      expect(info).toMatchObject({
        name: 'a.txt',
        type: 'file',
        path: '/workspace/paths/a.txt',
        size: 3,
        owner: 'user',
      });
      expect(info.permissions).toMatch(/^-[r-][w-][x-]/);
      expect(await sandbox.files.read('/workspace/paths/a.txt')).toBe('abc');
      await expect(sandbox.files.list('/etc')).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(sandbox.files.read('../outside')).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(sandbox.files.read('missing.txt')).rejects.toBeInstanceOf(FileNotFoundError);
      await expect(sandbox.files.getInfo('missing.txt')).rejects.toBeInstanceOf(FileNotFoundError);
      await expect(sandbox.files.read('paths')).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(sandbox.files.read('paths/a.txt', { user: 'root' })).rejects.toThrow(/no root user/);
    });

    it('makes directories (false when they exist), lists by depth, moves and removes', async () => {
      expect(await sandbox.files.makeDir('tree/a/b')).toBe(true);
      expect(await sandbox.files.makeDir('tree/a/b')).toBe(false);
      await sandbox.files.write('tree/top.txt', '1');
      await sandbox.files.write('tree/a/b/deep.txt', '2');
      const one = await sandbox.files.list('/home/user/tree');
      expect(one.map((e) => e.name).sort()).toEqual(['a', 'top.txt']);
      expect(one.find((e) => e.name === 'a')?.type).toBe('dir');
      const three = await sandbox.files.list('tree', { depth: 3 });
      expect(three.map((e) => e.path).sort()).toEqual([
        '/workspace/tree/a',
        '/workspace/tree/a/b',
        '/workspace/tree/a/b/deep.txt',
        '/workspace/tree/top.txt',
      ]);
      const moved = await sandbox.files.rename('tree/top.txt', 'tree/new/place.txt');
      expect(moved.path).toBe('/workspace/tree/new/place.txt');
      await sandbox.files.remove('tree');
      expect(await sandbox.files.exists('tree')).toBe(false);
      await expect(sandbox.files.remove('/home/user')).rejects.toBeInstanceOf(InvalidArgumentError);
    });

    it('bounds listings by the policy', async () => {
      for (let i = 0; i < 3; i++) await sandbox.files.makeDir(`many/d${i}`);
      await sandbox.files.writeFiles(
        Array.from({ length: 60 }, (_, i) => ({ path: `many/d${i % 3}/f${i}.txt`, data: 'x' })),
      );
      await expect(sandbox.files.list('many', { depth: 2 })).rejects.toThrow(/more than 50 entries/);
    });

    it('watches a directory: create, write and remove, relative names, recursive or not', async () => {
      await sandbox.files.makeDir('watched/sub');
      const events: { name: string; type: string }[] = [];
      const flat: { name: string; type: string }[] = [];
      const handle = await sandbox.files.watchDir('/home/user/watched', (e) => void events.push(e), {
        recursive: true,
      });
      const shallow = await sandbox.files.watchDir('watched', (e) => void flat.push(e));
      await sandbox.files.write('watched/sub/new.txt', 'x');
      await sandbox.files.write('watched/top.txt', 'y');
      await until(
        () => events.some((e) => e.name === 'sub/new.txt') && flat.some((e) => e.name === 'top.txt'),
        'watch events',
      );
      await sandbox.files.remove('watched/top.txt');
      await until(
        () => events.some((e) => e.name === 'top.txt' && e.type === FilesystemEventType.REMOVE),
        'the remove event',
      );
      expect(events.find((e) => e.name === 'sub/new.txt')?.type).toMatch(/create|write/);
      expect(flat.some((e) => e.name.includes('/'))).toBe(false);
      await handle.stop();
      await shallow.stop();
    });

    it('polls a watcher (CreateWatcher / GetWatcherEvents / RemoveWatcher), also in the binary protocol', async () => {
      const { fs } = rpc({ binary: true });
      await sandbox.files.makeDir('polled');
      const { watcherId } = await fs.createWatcher({ path: '/workspace/polled', recursive: false });
      await sandbox.files.write('polled/p.txt', 'x');
      const names: string[] = [];
      await until(async () => {
        for (const e of (await fs.getWatcherEvents({ watcherId })).events) names.push(e.name);
        return names.includes('p.txt');
      }, 'polled events');
      await fs.removeWatcher({ watcherId });
      const gone = await fs.getWatcherEvents({ watcherId }).catch((e: unknown) => e);
      expect((gone as ConnectError).code).toBe(Code.NotFound);
    });
  });

  describe('/files', () => {
    it('uploads multipart (SDK 2.10.1 and 2.51.0) and octet-stream, and downloads', async () => {
      const old = new (Sandbox210 as unknown as new (opts: Record<string, unknown>) => Sandbox)({
        sandboxId: envd.target.sandboxId,
        envdVersion: '0.5.7',
        envdAccessToken: envd.target.accessToken,
        sandboxUrl: envd.url,
        apiKey: 'e2b_unused',
      });
      const many = await old.files.write([
        { path: 'up/one.txt', data: 'one' },
        { path: '/home/user/up/two.txt', data: 'two' },
      ]);
      expect(many).toEqual([
        expect.objectContaining({ path: '/workspace/up/one.txt', name: 'one.txt' }),
        expect.objectContaining({ path: '/workspace/up/two.txt', name: 'two.txt' }),
      ]);
      const bytes = new Uint8Array([0, 1, 2, 255]);
      await sandbox.files.write('up/bin.dat', bytes.buffer, { useOctetStream: true });
      expect(await sandbox.files.read('up/bin.dat', { format: 'bytes' })).toEqual(bytes);
      await sandbox.files.write('up/zipped.txt', 'compressed', { useOctetStream: true, gzip: true });
      expect(await old.files.read('up/zipped.txt')).toBe('compressed');
      expect(await sandbox.files.read('up/two.txt')).toBe('two');
    });

    it('refuses files over the policy cap with 413', async () => {
      const big = new ArrayBuffer(MAX_FILE + 1);
      await expect(sandbox.files.write('big.bin', big, { useOctetStream: true })).rejects.toThrow(
        /larger than 65536 bytes/,
      );
      await expect(sandbox.files.write('big.bin', big)).rejects.toThrow(/larger than/);
      const res = await fetch(`${envd.url}/files?path=big.bin`, {
        method: 'POST',
        headers: { 'X-Access-Token': envd.target.accessToken, 'content-type': 'application/octet-stream' },
        body: big,
      });
      expect(res.status).toBe(413);
      expect(await sandbox.files.exists('big.bin')).toBe(false);
    });
  });

  it('forget ends the session’s processes', async () => {
    const handle = await sandbox.commands.run('sleep 30', { background: true });
    envd.handler.forget(sessionId);
    const ended = await handle.wait().catch((e: unknown) => e);
    expect(ended).toBeInstanceOf(CommandExitError);
    expect(await sandbox.commands.list()).toEqual([]);
  });
});
