import { CommandExitError, Sandbox } from 'e2b';
import { afterAll, describe, expect } from 'vitest';
import { dockerApiTest, dockerSkip } from '../../testing/docker-api.ts';
import { type EnvdTestServer, serveEnvd } from './envd-testing.ts';

// The envd API on a real Docker sandbox, driven by the unmodified E2B SDK: commands (streamed, detached and
// re-attached), a PTY, files up and down, and a directory watch.

const IMAGE = 'studio-sandbox:latest';
const test = dockerApiTest('envd');

async function until(check: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe.skipIf(dockerSkip !== undefined)(
  `envd on a Docker sandbox${dockerSkip ? ` (skipped: ${dockerSkip})` : ''}`,
  () => {
    let envd: EnvdTestServer;
    let sandbox: Sandbox;

    test.beforeAll(async ({ api, alice }) => {
      const sessionId = (
        await alice.client.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 256 } })
      ).id;
      const { token } = await alice.client.tokens.create.mutate({ name: 'e2b' });
      envd = await serveEnvd(api.app, sessionId, await api.app.deps.auth.authenticate(token), {
        envs: { GREETING: 'hello' },
      });
      sandbox = new (Sandbox as unknown as new (opts: Record<string, unknown>) => Sandbox)({
        sandboxId: envd.target.sandboxId,
        envdVersion: '0.5.7',
        envdAccessToken: envd.target.accessToken,
        sandboxUrl: envd.url,
        apiKey: 'e2b_unused',
      });
    });
    afterAll(async () => {
      await envd?.close();
    });

    test('runs commands as the sandbox user in /workspace, with exit codes', async () => {
      const r = await sandbox.commands.run('echo "$GREETING $(id -un) $(pwd)"');
      expect(r.stdout).toBe('hello studio /workspace\n');
      const home = await sandbox.commands.run('pwd', { cwd: '/home/user' });
      expect(home.stdout).toBe('/workspace\n');
      const failed = await sandbox.commands.run('exit 7').catch((e: unknown) => e);
      expect((failed as CommandExitError).exitCode).toBe(7);
    });

    test('a background command outlives its stream and is re-attached by pid', async () => {
      const handle = await sandbox.commands.run('for i in $(seq 1 200); do echo tick $i; sleep 0.1; done', {
        background: true,
      });
      await until(() => handle.stdout.includes('tick 1'), 'the first tick');
      await handle.disconnect();
      const again = await sandbox.commands.connect(handle.pid);
      await until(() => /tick \d+/.test(again.stdout), 'ticks after re-attaching');
      expect((await sandbox.commands.list()).map((p) => p.pid)).toContain(handle.pid);
      await again.kill();
      await expect(again.wait()).rejects.toBeInstanceOf(CommandExitError);
    });

    test('a PTY takes input and resizes', async () => {
      let out = '';
      const decoder = new TextDecoder();
      const pty = await sandbox.pty.create({
        cols: 80,
        rows: 24,
        onData: (d) => {
          out += decoder.decode(d, { stream: true });
        },
      });
      await sandbox.pty.resize(pty.pid, { cols: 120, rows: 40 });
      await sandbox.pty.sendInput(
        pty.pid,
        new TextEncoder().encode('stty size; echo "user=$(id -un)"; exit\n'),
      );
      await pty.wait();
      expect(out).toContain('40 120');
      expect(out).toContain('user=studio');
    });

    test('files go up and down, and a watch sees changes made by processes', async () => {
      await sandbox.files.write('/home/user/data/in.txt', 'from the SDK');
      const copied = await sandbox.commands.run('cat data/in.txt');
      expect(copied.stdout).toBe('from the SDK');
      const events: string[] = [];
      const watch = await sandbox.files.watchDir('data', (e) => void events.push(`${e.type}:${e.name}`));
      await sandbox.commands.run('echo made > /workspace/data/by-process.txt');
      await until(() => events.some((e) => e.endsWith(':by-process.txt')), 'the watch event');
      await watch.stop();
      expect(await sandbox.files.read('data/by-process.txt')).toBe('made\n');
      const listed = await sandbox.files.list('/workspace/data');
      expect(listed.map((e) => e.name).sort()).toEqual(['by-process.txt', 'in.txt']);
    });
  },
);
