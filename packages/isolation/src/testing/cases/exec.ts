import { randomBytes } from 'node:crypto';
import { describe, expect } from 'vitest';
import {
  describeRun,
  expectIsolationError,
  expectNoProcesses,
  expectOk,
  nonce,
  processesMatching,
  py,
  run,
  sh,
  sleep,
  text,
  waitFor,
} from '../fixtures.ts';
import type { ConformanceHarness } from '../harness.ts';

/** Behaviour of `Sandbox.exec`: the contract in types.ts, on the shared sandbox. */
export function execCases(h: ConformanceHarness): void {
  describe('exec', () => {
    h.case('exec.exit-code', 'resolves with the exit code of the process', async () => {
      const sandbox = await h.shared();
      for (const code of [0, 1, 42, 255]) {
        const r = await sh(sandbox, `exit ${code}`);
        expect(r.exitCode, describeRun(r)).toBe(code);
        expect(r.signal).toBeNull();
        expect(r.timedOut).toBe(false);
        expect(r.oomKilled).toBe(false);
        expect(r.durationMs).toBeGreaterThanOrEqual(0);
      }
    });

    h.case('exec.signal', 'a process killed by a signal has exitCode null and the signal name', async () => {
      const sandbox = await h.shared();
      const r = await sh(sandbox, 'kill -KILL $$');
      expect(r.exitCode, describeRun(r)).toBeNull();
      expect(r.signal).toMatch(/^(SIG)?KILL$/);
      expect(r.timedOut).toBe(false);
    });

    h.case('exec.stdout-stderr', 'stdout and stderr are kept apart', async () => {
      const sandbox = await h.shared();
      const r = await sh(sandbox, 'for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done');
      expectOk(r, 'interleaved output');
      expect(r.out).toBe('out1\nout2\nout3\nout4\nout5\n');
      expect(r.err).toBe('err1\nerr2\nerr3\nerr4\nerr5\n');
      expect(r.truncated).toBe(false);
    });

    h.case(
      'exec.stdin',
      'stdin as a string, bytes or an async iterable is delivered, then closed',
      async () => {
        const sandbox = await h.shared();
        const s = await run(sandbox, ['cat'], { stdin: 'hello\nwörld\n' });
        expect(s.out).toBe('hello\nwörld\n');
        const bytes = new Uint8Array(randomBytes(64 * 1024));
        bytes.set([0, 255, 10, 13, 4], 0); // NUL, 0xff, LF, CR, ^D must pass untouched
        const b = await sandbox.exec(['cat'], { stdin: bytes, timeoutMs: 60_000, maxOutputBytes: 1 << 20 });
        expect(Buffer.from(b.stdout).equals(Buffer.from(bytes)), 'binary stdin round trip').toBe(true);
        async function* chunks(): AsyncIterable<Uint8Array> {
          for (const part of ['one,', 'two,', 'three']) {
            await sleep(50);
            yield new TextEncoder().encode(part);
          }
        }
        const it = await run(sandbox, ['cat'], { stdin: chunks() });
        expect(it.out).toBe('one,two,three');
        // No stdin: the process sees EOF at once instead of waiting for input that never comes.
        const none = await run(sandbox, ['cat'], { timeoutMs: 20_000 });
        expect(none.timedOut, 'cat without stdin must see EOF').toBe(false);
        expect(none.exitCode).toBe(0);
        expect(none.out).toBe('');
      },
    );

    h.case('exec.argv-exact', 'argv reaches the process byte for byte, never through a shell', async () => {
      const sandbox = await h.shared();
      const ws = h.workspace(sandbox);
      const args = [
        '$(id)',
        '`id`',
        'a;b',
        `x && touch ${ws}/argv-pwned`,
        '| cat',
        `>${ws}/argv-pwned`,
        '*',
        ' spaced  out ',
        '',
        "it's",
        '"quoted"',
        'line1\nline2',
        'ünïcødé ✓',
        '--flag=$HOME',
        '\\backslash',
      ];
      const r = await py(sandbox, 'import json, sys; print(json.dumps(sys.argv[1:]))', args);
      expectOk(r, 'argv echo');
      expect(JSON.parse(r.out)).toEqual(args);
      const check = await run(sandbox, ['test', '-e', `${ws}/argv-pwned`]);
      expect(check.exitCode, 'an argument was interpreted by a shell').toBe(1);
    });

    h.case('exec.env', 'env is passed exactly and no host environment leaks in', async () => {
      const sandbox = await h.shared();
      const hostOnly = 'STUDIO_CONFORMANCE_HOST_ONLY';
      process.env[hostOnly] = nonce('host-env');
      try {
        const env = { FOO: 'bar baz', TRICKY: '$(id);`id` "q" \'s\' \\n', EMPTY: '' };
        const r = await py(
          sandbox,
          'import json, os, sys; print(json.dumps({k: os.environ.get(k) for k in sys.argv[1:]}))',
          ['FOO', 'TRICKY', 'EMPTY', hostOnly],
          { env },
        );
        expectOk(r, 'env echo');
        expect(JSON.parse(r.out)).toEqual({ ...env, [hostOnly]: null });
        const path = await run(sandbox, ['sh', '-c', 'printf %s "$PATH"']);
        expect(path.out, 'PATH is set').toMatch(/\/usr\/bin/);
      } finally {
        delete process.env[hostOnly];
      }
    });

    h.case('exec.cwd', 'cwd is resolved inside /workspace; the default is /workspace', async () => {
      const sandbox = await h.shared();
      const ws = h.workspace(sandbox);
      const dir = nonce('cwd');
      await sandbox.mkdir(`${dir}/sub dir`, { recursive: true });
      const root = await run(sandbox, ['pwd']);
      expect(root.out).toBe(`${ws}\n`);
      const sub = await run(sandbox, ['pwd'], { cwd: `${dir}/sub dir` });
      expect(sub.out).toBe(`${ws}/${dir}/sub dir\n`);
    });

    h.case('exec.cwd-escape', 'a cwd outside /workspace is refused before anything runs', async () => {
      const sandbox = await h.shared();
      // '/proc/self/fd/7' is the CVE-2024-21626 shape: a working directory through a leaked descriptor.
      for (const cwd of ['..', '../', '/', '/etc', '/proc/self/fd/7', 'a/../../etc', './../tmp', 'x\0y']) {
        await expectIsolationError(
          sandbox.exec(['pwd'], { cwd, timeoutMs: 10_000, maxOutputBytes: 4096 }),
          ['INVALID_INPUT', 'FORBIDDEN'],
          `exec with cwd ${JSON.stringify(cwd)}`,
        );
      }
    });

    h.case('exec.invalid-input', 'an empty argv or a nonsensical limit is INVALID_INPUT', async () => {
      const sandbox = await h.shared();
      await expectIsolationError(
        sandbox.exec([], { timeoutMs: 10_000, maxOutputBytes: 4096 }),
        ['INVALID_INPUT'],
        'exec([])',
      );
      for (const timeoutMs of [-1, Number.NaN]) {
        await expectIsolationError(
          sandbox.exec(['true'], { timeoutMs, maxOutputBytes: 4096 }),
          ['INVALID_INPUT'],
          `exec with timeoutMs ${timeoutMs}`,
        );
      }
      await expectIsolationError(
        sandbox.exec(['true'], { timeoutMs: 10_000, maxOutputBytes: -1 }),
        ['INVALID_INPUT'],
        'exec with maxOutputBytes -1',
      );
    });

    h.case('exec.streaming', 'onStdout/onStderr get chunks while the process still runs', async () => {
      const sandbox = await h.shared();
      let resolved = false;
      let sawAWhileRunning: boolean | undefined;
      let sawErrWhileRunning: boolean | undefined;
      const out: Uint8Array[] = [];
      const err: Uint8Array[] = [];
      const pending = sandbox
        .exec(['sh', '-c', 'echo a; echo e >&2; sleep 2; echo b'], {
          timeoutMs: 60_000,
          maxOutputBytes: 1 << 20,
          onStdout: (chunk) => {
            out.push(chunk);
            if (sawAWhileRunning === undefined && text(chunk).includes('a')) sawAWhileRunning = !resolved;
          },
          onStderr: (chunk) => {
            err.push(chunk);
            if (sawErrWhileRunning === undefined && text(chunk).includes('e')) sawErrWhileRunning = !resolved;
          },
        })
        .finally(() => {
          resolved = true;
        });
      const r = await pending;
      expect(r.exitCode).toBe(0);
      expect(sawAWhileRunning, "'a' must be streamed before the exec resolves").toBe(true);
      expect(sawErrWhileRunning, "'e' on stderr must be streamed before the exec resolves").toBe(true);
      expect(text(Buffer.concat(out))).toBe('a\nb\n');
      expect(text(Buffer.concat(err))).toBe('e\n');
      expect(text(r.stdout)).toBe('a\nb\n');
    });

    h.case(
      'exec.timeout-kills-group',
      'past timeoutMs the whole group dies, including a double-forked child',
      async () => {
        const sandbox = await h.shared();
        // Unique durations mark this case's processes; `(sleep &)` double-forks: the sleep is reparented to init.
        const pending = sh(sandbox, 'sleep 3017 & (sleep 3018 &); sleep 3019', { timeoutMs: 4_000 });
        const seen = await waitFor('the sleeps to start', async () => {
          const found = await processesMatching(sandbox, '^sleep 30(17|18|19)$');
          return found.length === 3 ? found : undefined;
        });
        expect(seen).toHaveLength(3);
        const r = await pending;
        expect(r.timedOut, describeRun(r)).toBe(true);
        expect(r.exitCode).toBeNull();
        await expectNoProcesses(sandbox, '^sleep 30(17|18|19)$', 'after the timeout');
      },
    );

    h.case('exec.output-cap', 'output past maxOutputBytes is dropped and truncated is true', async () => {
      const sandbox = await h.shared();
      const cap = 1 << 20;
      let streamed = 0;
      const flood = await sh(sandbox, 'head -c 20000000 /dev/zero; head -c 1000000 /dev/zero >&2', {
        maxOutputBytes: cap,
        onStdout: (c) => {
          streamed += c.byteLength;
        },
        onStderr: (c) => {
          streamed += c.byteLength;
        },
      });
      expect(flood.truncated, describeRun(flood)).toBe(true);
      expect(flood.stdout.byteLength + flood.stderr.byteLength).toBeLessThanOrEqual(cap);
      expect(flood.stdout.byteLength).toBeGreaterThan(0);
      expect(streamed, 'bytes streamed to callbacks').toBeLessThanOrEqual(cap);
      const small = await sh(sandbox, 'head -c 1000 /dev/zero', { maxOutputBytes: cap });
      expect(small.truncated).toBe(false);
      expect(small.stdout.byteLength).toBe(1000);
    });

    h.case('exec.cancel', 'aborting the signal kills the group and rejects CANCELLED', async () => {
      const sandbox = await h.shared();
      const controller = new AbortController();
      const pending = sandbox.exec(['sh', '-c', 'sleep 3020 & sleep 3021'], {
        timeoutMs: 110_000,
        maxOutputBytes: 4096,
        signal: controller.signal,
      });
      pending.catch(() => {}); // awaited below; no unhandled rejection while we poll
      await waitFor('the sleeps to start', async () =>
        (await processesMatching(sandbox, '^sleep 302[01]$')).length === 2 ? true : undefined,
      );
      controller.abort();
      await expectIsolationError(pending, ['CANCELLED'], 'exec after abort');
      await expectNoProcesses(sandbox, '^sleep 302[01]$', 'after cancel');
      await expectIsolationError(
        sandbox.exec(['true'], { timeoutMs: 10_000, maxOutputBytes: 4096, signal: AbortSignal.abort() }),
        ['CANCELLED'],
        'exec with an already aborted signal',
      );
    });

    h.case('exec.zombies-reaped', "an orphan's exit is reaped by the sandbox's init", async () => {
      const sandbox = await h.shared();
      // Positive control first: while its parent lives and does not wait, the child really is a zombie.
      const probe = await py(
        sandbox,
        [
          'import os, time',
          'pid = os.fork()',
          'if pid == 0: os._exit(0)',
          'time.sleep(0.5)',
          "state = open('/proc/%d/stat' % pid).read().rsplit(')', 1)[1].split()[0]",
          'print(pid, state)',
        ].join('\n'),
      );
      expectOk(probe, 'zombie probe');
      const [pid, state] = probe.out.trim().split(' ');
      expect(state, 'the unreaped child is a zombie while its parent lives').toBe('Z');
      // Plus a few orphans from a shell, then the parent exits: init must reap all of them.
      expectOk(await sh(sandbox, 'for i in 1 2 3 4; do (sleep 0.2 &); done'), 'orphans');
      const zombies = await waitFor(
        'init to reap the orphans',
        async () => {
          const r = await run(sandbox, ['ps', '-eo', 'pid=,stat=,args=']);
          const z = r.out.split('\n').filter((line) => /^\s*\d+\s+Z/.test(line));
          const gone = (await run(sandbox, ['test', '-e', `/proc/${pid}`])).exitCode === 1;
          return z.length === 0 && gone ? z : undefined;
        },
        { timeoutMs: 20_000 },
      );
      expect(zombies).toEqual([]);
    });
  });
}
