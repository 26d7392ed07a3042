import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { isIsolationError } from '@studio/isolation';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_COMMAND, AGENT_DIR } from './agent-dir.ts';
import { AgentClient } from './client.ts';
import { localAgentMissing } from './local.ts';
import { expectCode, race, SWAPPER, text, until } from './test-utils.ts';

// The agent where it really runs: the agent binary as the container's first process, uid 1000, a read-only root, no
// capabilities, and /workspace its own mount (a tmpfs here), so the st_dev check and EXDEV hold as they
// do in production. The backends' conformance suite covers the same agent through their own plumbing.

const image = process.env.STUDIO_SANDBOX_IMAGE ?? 'studio-sandbox:latest';
const CANARY = 'CANARY-in-sandbox-outside-the-workspace';

function missingRuntime(): string | undefined {
  const docker = spawnSync('docker', ['image', 'inspect', '--format', '{{.Id}}', image], {
    encoding: 'utf8',
  });
  if (docker.error) return 'docker is not installed';
  if (docker.status !== 0) return `image ${image} not found (bash infra/setup-runtimes.sh builds it)`;
  return undefined;
}

const missing = missingRuntime();
if (missing && process.env.CI === 'true') throw new Error(`the Docker runtime is required in CI: ${missing}`);

const opts = { timeoutMs: 20_000, maxOutputBytes: 1_000_000 };

// In CI a missing build fails the suite rather than skipping it.
const agentMissing = process.env.CI === 'true' ? undefined : localAgentMissing();
const command = AGENT_COMMAND;

{
  const skip = missing ?? agentMissing;
  describe.skipIf(skip !== undefined)(`agent in a Docker sandbox${skip ? ` (skipped: ${skip})` : ''}`, () => {
    const name = `studio-agent-test-${randomBytes(4).toString('hex')}`;
    let child: ChildProcessWithoutNullStreams;
    let client: AgentClient;

    async function sh(script: string): Promise<{ code: number | null; out: string; err: string }> {
      const r = await client.exec(['sh', '-c', script], opts);
      return { code: r.exitCode, out: text(r.stdout), err: text(r.stderr) };
    }

    beforeAll(async () => {
      child = spawn(
        'docker',
        [
          'run',
          '-i',
          '--rm',
          '--name',
          name,
          '--label',
          'studio.test=agent',
          '--network',
          'none',
          '--user',
          '1000:1000',
          '--read-only',
          '--cap-drop',
          'ALL',
          '--security-opt',
          'no-new-privileges',
          '--memory',
          '256m',
          '--memory-swap',
          '256m',
          '--pids-limit',
          '256',
          '--tmpfs',
          '/tmp:rw,nosuid,nodev,size=64m,mode=1777',
          '--tmpfs',
          '/workspace:rw,nosuid,nodev,size=64m,uid=1000,gid=1000,mode=0755',
          '--mount',
          `type=bind,src=${AGENT_DIR},dst=/opt/studio,readonly`,
          '-e',
          'HOME=/tmp/home',
          '-e',
          'STUDIO_WORKSPACE=/workspace',
          image,
          ...command,
        ],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      child.stderr.resume();
      client = new AgentClient({ input: child.stdout, output: child.stdin });
      await client.hello(60_000);
      const setup = await sh(
        `mkdir -p /tmp/outside/dir && printf '${CANARY}' > /tmp/outside/secret && printf '${CANARY}' > /tmp/outside/dir/inner`,
      );
      expect(setup.code).toBe(0);
    });

    afterAll(async () => {
      await client?.close();
      spawnSync('docker', ['rm', '-f', name], { stdio: 'ignore' });
    });

    it('runs as the sandbox user and as PID 1, with a workspace of its own', async () => {
      const info = client.info;
      // The agent is the container's first process: its own init.
      expect(info).toMatchObject({
        pid: 1,
        uid: 1000,
        workspace: '/workspace',
        workspaceError: null,
        terminal: true,
      });
      expect(info?.workspaceDev).not.toBeNull();
      expect((await sh('id -u; echo $HOME; pwd')).out).toBe('1000\n/tmp/home\n/workspace\n');
      expect((await client.exec(['no-such-command'], opts)).exitCode).toBe(127);
    });

    it('refuses links to the rest of the sandbox: the image, the agent, /tmp', async () => {
      await sh(
        'ln -s /etc e; ln -s /opt/studio s; ln -s /tmp/outside t; ln -s /tmp/outside/secret f; ln -s ../tmp r',
      );
      for (const p of ['e/passwd', 's/studio-agent', 't/secret', 'f', 'r/outside/secret']) {
        await expectCode(client.readFile(p), 'FORBIDDEN');
        await expectCode(client.writeFile(p, 'x'), 'FORBIDDEN');
      }
      await expectCode(client.list('t'), 'FORBIDDEN');
      await expectCode(client.mkdir('t/new'), 'FORBIDDEN');
      await expectCode(client.remove('t/dir', { recursive: true }), 'FORBIDDEN');
      await client.remove('t', { recursive: true });
      expect((await sh('cat /tmp/outside/secret /tmp/outside/dir/inner')).out).toBe(CANARY + CANARY);
    });

    it('cannot be given a hardlink to a file outside: link(2) across the mount fails', async () => {
      const r = await sh('ln /tmp/outside/secret /workspace/hard');
      expect(r.code).not.toBe(0);
      expect(r.err).toMatch(/cross-device/i);
    });

    it('holds while sandbox code swaps a directory and a link out, thousands of times', async () => {
      await sh(
        'mkdir -p /workspace/x && echo inside > /workspace/x/file && ln -s /tmp/outside /workspace/x-alt',
      );
      let swaps = -1;
      let partial = '';
      const controller = new AbortController();
      const running = client
        .exec(['python3', '-c', SWAPPER, 'exchange', '/workspace/x', '/workspace/x-alt'], {
          ...opts,
          timeoutMs: 600_000,
          signal: controller.signal,
          onStdout: (chunk) => {
            const lines = (partial + text(chunk)).split('\n');
            partial = lines.pop() ?? '';
            for (const line of lines) swaps = Number(line);
          },
        })
        .catch((e: unknown) => e);
      await until(() => swaps >= 0, 30_000, 'the swapper to start');
      const seen: string[] = [];
      let refused = 0;
      const swapper = {
        get swaps() {
          return swaps;
        },
        stop: async () => undefined,
      };
      try {
        await race(swapper, 300, 5000, async (i) => {
          for (const op of [
            () => client.readFile('x/file').then((b) => seen.push(text(b))),
            () => client.list('x').then((l) => seen.push(JSON.stringify(l))),
            () => client.writeFile(`x/w${i}`, 'w'),
            () => client.mkdir(`x/m${i}`),
            () => client.remove('x/dir', { recursive: true }),
          ]) {
            await op().catch((e: unknown) => {
              if (!isIsolationError(e)) throw e;
              if (e.code === 'FORBIDDEN') refused++;
            });
          }
        });
      } finally {
        controller.abort();
        await running;
      }
      expect(refused).toBeGreaterThan(0);
      for (const s of seen) expect(s).not.toContain(CANARY);
      const outside = await sh('cd /tmp/outside && find . | sort && cat secret dir/inner');
      expect(outside.out).toBe(`.\n./dir\n./dir/inner\n./secret\n${CANARY}${CANARY}`);
    });

    it('kills a timed-out process tree, including what left the group', async () => {
      const r = await client.exec(['sh', '-c', 'sleep 301 & setsid sleep 302 & sleep 303'], {
        ...opts,
        timeoutMs: 500,
      });
      expect(r.timedOut).toBe(true);
      await until(async () => !(await sh('ps -eo args')).out.includes('sleep 30'), 10_000, 'sleeps to die');
    });

    it('reports an exec the OOM killer ended', async () => {
      const r = await client.exec(['node', '-e', 'const a = []; for (;;) a.push(Buffer.alloc(8 << 20, 1))'], {
        ...opts,
        timeoutMs: 60_000,
      });
      expect(r).toMatchObject({ exitCode: null, signal: 'SIGKILL', oomKilled: true, timedOut: false });
      expect(await client.ping()).toBeGreaterThanOrEqual(0);
    });

    it('opens a terminal that follows resize', async () => {
      const t = await client.openTerminal({ cols: 80, rows: 24 });
      let out = '';
      t.onData((c) => {
        out += text(c);
      });
      t.write('stty size\n');
      await until(() => out.includes('24 80'), 10_000, 'initial size');
      t.resize(120, 30);
      t.write('stty size; exit 3\n');
      expect(await t.exited).toEqual({ exitCode: 3, signal: null });
      expect(out).toContain('30 120');
    });
  });
}
