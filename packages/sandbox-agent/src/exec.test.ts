import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isIsolationError } from '@studio/isolation';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AgentFixture,
  createFixture,
  describeAgent,
  expectCode,
  processesWith,
  text,
  uniqueSleep,
  until,
} from './test-utils.ts';

describeAgent(() => {
  let f: AgentFixture;
  beforeAll(async () => {
    f = await createFixture({ env: { AGENT_ONLY_SECRET: 'agent-env-must-not-leak' } });
  });
  afterAll(async () => {
    await f?.dispose();
  });

  const opts = { timeoutMs: 10_000, maxOutputBytes: 1_000_000 };

  describe('exec', () => {
    it('reports exit codes and keeps stdout and stderr apart', async () => {
      const r = await f.client.exec(['sh', '-c', 'echo out; echo err >&2; exit 3'], opts);
      expect(r.exitCode).toBe(3);
      expect(r.signal).toBeNull();
      expect(text(r.stdout)).toBe('out\n');
      expect(text(r.stderr)).toBe('err\n');
      expect(r).toMatchObject({ timedOut: false, truncated: false, oomKilled: false });
      expect(r.durationMs).toBeGreaterThanOrEqual(0);
      expect((await f.client.exec(['true'], opts)).exitCode).toBe(0);
    });

    it('passes argv exactly, with no shell in between', async () => {
      const args = ['a b', '"double"', "'single'", '$HOME', '*', '', 'semi;colon', 'back\\slash', 'ünï'];
      const r = await f.client.exec(['printf', '%s|', ...args], opts);
      expect(text(r.stdout)).toBe(`${args.join('|')}|`);
    });

    it('streams stdin from a string, bytes or an async iterable', async () => {
      expect(text((await f.client.exec(['cat'], { ...opts, stdin: 'from a string' })).stdout)).toBe(
        'from a string',
      );
      const bytes = new Uint8Array(256).map((_, i) => i);
      expect(Buffer.from((await f.client.exec(['cat'], { ...opts, stdin: bytes })).stdout)).toEqual(
        Buffer.from(bytes),
      );
      async function* chunks() {
        for (let i = 0; i < 50; i++) yield new Uint8Array(100_000).fill(97 + (i % 26));
      }
      const r = await f.client.exec(['wc', '-c'], { ...opts, stdin: chunks() });
      expect(text(r.stdout).trim()).toBe('5000000');
    });

    it('runs with a minimal environment plus what is given', async () => {
      const r = await f.client.exec(['sh', '-c', 'echo "$FOO|$LANG|$TERM"; env'], {
        ...opts,
        env: { FOO: 'bar baz' },
      });
      const [first, ...rest] = text(r.stdout).split('\n');
      expect(first).toBe('bar baz|C.UTF-8|dumb');
      const names = rest.filter(Boolean).map((l) => l.split('=')[0]);
      expect(names).not.toContain('AGENT_ONLY_SECRET');
      expect(names).not.toContain('STUDIO_WORKSPACE');
      await expectCode(f.client.exec(['true'], { ...opts, env: { 'A=B': 'x' } }), 'INVALID_INPUT');
    });

    it('runs in a working directory relative to the workspace, never outside it', async () => {
      mkdirSync(join(f.ws, 'sub dir'), { recursive: true });
      expect(text((await f.client.exec(['pwd'], opts)).stdout).trim()).toBe(f.ws);
      expect(text((await f.client.exec(['pwd'], { ...opts, cwd: 'sub dir' })).stdout).trim()).toBe(
        join(f.ws, 'sub dir'),
      );
      await expectCode(f.client.exec(['pwd'], { ...opts, cwd: '..' }), 'INVALID_INPUT');
      await expectCode(f.client.exec(['pwd'], { ...opts, cwd: '/tmp' }), 'INVALID_INPUT');
      await expectCode(f.client.exec(['pwd'], { ...opts, cwd: 'missing' }), 'NOT_FOUND');
      symlinkSync(f.outside, join(f.ws, 'cwd-escape'));
      await expectCode(f.client.exec(['pwd'], { ...opts, cwd: 'cwd-escape' }), 'FORBIDDEN');
    });

    it('reports a command that does not exist as exit code 127, like a shell', async () => {
      const r = await f.client.exec(['definitely-not-a-command-xyz', 'arg'], opts);
      expect(r.exitCode).toBe(127);
      expect(text(r.stderr)).toContain('definitely-not-a-command-xyz: command not found');
      writeFileSync(join(f.ws, 'not-executable.sh'), 'echo hi\n', { mode: 0o644 });
      const r2 = await f.client.exec(['./not-executable.sh'], opts);
      expect(r2.exitCode).toBe(126);
      expect(text(r2.stderr)).toContain('permission denied');
    });

    it('kills the whole process group and descendants that left it when the timeout passes', async () => {
      const [a, b, c] = [uniqueSleep(), uniqueSleep(), uniqueSleep()];
      // One sleep in the group, one in its own session (setsid), and the foreground one.
      const r = await f.client.exec(['sh', '-c', `sleep ${a} & setsid sleep ${b} & sleep ${c}`], {
        ...opts,
        timeoutMs: 500,
      });
      expect(r.timedOut).toBe(true);
      expect(r.exitCode).toBeNull();
      expect(r.signal).toBe('SIGKILL');
      expect(r.oomKilled).toBe(false);
      await until(
        () => [a, b, c].every((m) => processesWith(`sleep ${m}`).length === 0),
        5000,
        'sleeps to die',
      );
    });

    it('caps output, drops the rest and keeps draining the pipes', async () => {
      let streamed = 0;
      const r = await f.client.exec(['sh', '-c', 'yes | head -c 50000000; echo done >&2'], {
        timeoutMs: 60_000,
        maxOutputBytes: 1_000_000,
        onStdout: (c) => {
          streamed += c.length;
        },
      });
      expect(r.exitCode).toBe(0);
      expect(r.truncated).toBe(true);
      expect(r.timedOut).toBe(false);
      expect(r.stdout.length + r.stderr.length).toBe(1_000_000);
      expect(streamed).toBe(r.stdout.length);
      const small = await f.client.exec(['printf', '12345'], { ...opts, maxOutputBytes: 5 });
      expect(small.truncated).toBe(false);
      expect(text(small.stdout)).toBe('12345');
    });

    it('cancels through an AbortSignal: the promise rejects with CANCELLED and the processes die', async () => {
      const s = uniqueSleep();
      const controller = new AbortController();
      const running = f.client.exec(['sh', '-c', `sleep ${s} & wait`], {
        ...opts,
        signal: controller.signal,
      });
      await until(() => processesWith(`sleep ${s}`).length > 0, 5000, 'sleep to start');
      controller.abort();
      await expectCode(running, 'CANCELLED');
      await until(() => processesWith(`sleep ${s}`).length === 0, 5000, 'sleep to die');
      await expectCode(f.client.exec(['true'], { ...opts, signal: AbortSignal.abort() }), 'CANCELLED');
    });

    it('runs many execs at once on one connection', async () => {
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          f.client.exec(['sh', '-c', 'sleep 0.05; echo "$0"', `n${i}`], opts),
        ),
      );
      expect(results.map((r) => text(r.stdout).trim())).toEqual(
        Array.from({ length: 30 }, (_, i) => `n${i}`),
      );
    });

    it('refuses malformed requests', async () => {
      await expectCode(f.client.exec([], opts), 'INVALID_INPUT');
      await expectCode(f.client.exec(['a\0b'], opts), 'INVALID_INPUT');
      await expectCode(f.client.exec(['true'], { timeoutMs: 0, maxOutputBytes: 1 }), 'INVALID_INPUT');
    });
  });

  describe('agent lifecycle', () => {
    it('a new hello resets the agent: what the previous host started is stopped', async () => {
      const s = uniqueSleep();
      const running = f.client.exec(['sleep', s], opts);
      const outcome = running.then(
        () => 'resolved',
        (e: unknown) => e,
      );
      await until(() => processesWith(`sleep ${s}`).length > 0, 5000, 'sleep to start');
      await f.client.hello();
      expect(isIsolationError(await outcome, 'UNAVAILABLE')).toBe(true);
      await until(() => processesWith(`sleep ${s}`).length === 0, 5000, 'sleep to die');
      expect((await f.client.exec(['echo', 'still here'], opts)).exitCode).toBe(0);
    });

    it('stdin closing (the host is gone) kills everything and ends the agent', async () => {
      const g = await createFixture();
      try {
        const s = uniqueSleep();
        const outcome = g.client.exec(['sleep', s], opts).then(
          () => 'resolved',
          (e: unknown) => e,
        );
        await until(() => processesWith(`sleep ${s}`).length > 0, 5000, 'sleep to start');
        const exited = new Promise((resolve) => g.agent.child.once('exit', resolve));
        g.agent.child.stdin.end();
        expect(await exited).toBe(0);
        await until(() => processesWith(`sleep ${s}`).length === 0, 5000, 'sleep to die');
        expect(isIsolationError(await outcome, 'UNAVAILABLE')).toBe(true);
        expect(g.client.isClosed).toBe(true);
      } finally {
        await g.dispose();
      }
    });
  });
});
