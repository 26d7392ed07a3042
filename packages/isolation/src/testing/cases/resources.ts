import { describe, expect } from 'vitest';
import { isIsolationError } from '../../errors.ts';
import type { ExecResult, Sandbox } from '../../types.ts';
import {
  describeError,
  describeRun,
  expectIsolationError,
  expectNoProcesses,
  expectOk,
  nonce,
  PY_PRELUDE,
  processesMatching,
  pyJson,
  type RunOutput,
  run,
  settle,
  sh,
  text,
  waitFor,
} from '../fixtures.ts';
import { type ConformanceHarness, SMALL_LIMITS } from '../harness.ts';
import { freeBytes } from '../host.ts';

/**
 * After an attack the session must work again: the same sandbox answers, or the backend reports
 * RESOURCE_LIMIT for it and a start() brings it back with its workspace. Other sessions never notice.
 */
async function expectRecovers(h: ConformanceHarness, sandbox: Sandbox): Promise<void> {
  const ok = await waitFor(
    'the sandbox to answer again',
    async () => {
      const r = await settle(run(sandbox, ['echo', 'alive'], { timeoutMs: 20_000 }));
      if (r.ok && r.value.out === 'alive\n') return true;
      const info = await sandbox.info();
      if (info.state === 'failed' || info.state === 'stopped') {
        if (info.state === 'failed')
          expect(info.failure?.code, JSON.stringify(info.failure)).toBe('RESOURCE_LIMIT');
        await sandbox.start();
      }
      return undefined;
    },
    { timeoutMs: 90_000, intervalMs: 1_000 },
  );
  expect(ok).toBe(true);
  const other = await h.shared();
  expect((await run(other, ['echo', 'other-session'])).out, 'another session still works').toBe(
    'other-session\n',
  );
}

/**
 * The fork bomb's first shell exits at once and leaves its children behind, so the exec may resolve with 0
 * or end at the timeout; a rejection must name the limit. What matters is what {@link expectRecovers} checks.
 */
function expectEnded(
  outcome: { ok: true; value: ExecResult } | { ok: false; error: unknown },
  what: string,
): void {
  if (outcome.ok) return;
  expect(
    isIsolationError(outcome.error, 'RESOURCE_LIMIT') || isIsolationError(outcome.error, 'TIMEOUT'),
    `${what} rejected with ${describeError(outcome.error)}`,
  ).toBe(true);
}

/** SECURITY.md §1 resource attacks, each in a dedicated small sandbox that is destroyed afterwards. */
export function resourceCases(h: ConformanceHarness): void {
  describe('resources', () => {
    h.case(
      'resources.fork-bomb',
      'a fork bomb is contained by the pids limit and the session recovers',
      async () => {
        await using fx = await h.dedicated();
        const sandbox = fx.sandbox;
        const outcome = await settle(
          sandbox.exec(['bash', '-c', ':(){ :|:& };:'], { timeoutMs: 10_000, maxOutputBytes: 1 << 20 }),
        );
        expectEnded(outcome, 'fork bomb');
        await expectRecovers(h, sandbox);
        const left = await waitFor('the bomb to be gone', async () => {
          const r = await run(sandbox, ['ps', '-eo', 'pid=']);
          const count = r.out.split('\n').filter((l) => l.trim() !== '').length;
          return count < 10 ? count : undefined;
        });
        expect(left).toBeLessThan(10);
        const stats = await settle(sandbox.stats());
        if (stats.ok) expect(stats.value.pids).toBeLessThanOrEqual(SMALL_LIMITS.pids);
      },
    );

    h.case(
      'resources.memory-bomb',
      'a memory bomb is OOM-killed and reported; the session recovers',
      async () => {
        await using fx = await h.dedicated();
        const sandbox = fx.sandbox;
        // Touches every page (bytes filled with 'x'), so lazy allocation cannot hide it.
        const outcome = await settle(
          sandbox.exec(['python3', '-c', 'l = []\nwhile True:\n    l.append(b"x" * (16 << 20))'], {
            timeoutMs: 90_000,
            maxOutputBytes: 1 << 20,
          }),
        );
        if (outcome.ok) {
          const r = outcome.value;
          expect(
            r.oomKilled,
            `oomKilled: ${describeRun({ ...r, out: text(r.stdout), err: text(r.stderr) })}`,
          ).toBe(true);
          expect(r.exitCode === 0).toBe(false);
          expect(r.timedOut).toBe(false);
        } else {
          expect(isIsolationError(outcome.error, 'RESOURCE_LIMIT'), describeError(outcome.error)).toBe(true);
        }
        await expectRecovers(h, sandbox);
        const control = await run(sandbox, ['python3', '-c', 'b = b"x" * (32 << 20); print(len(b))']);
        expect(control.out, 'a modest allocation still works').toBe(`${32 << 20}\n`);
      },
    );

    h.case(
      'resources.disk-fill',
      'filling the workspace stops at the quota with ENOSPC; the host loses no more than the quota',
      async (ctx) => {
        if (!h.backend.capabilities().diskQuota) {
          throw new Error('capabilities().diskQuota is false: SECURITY.md §1 requires a workspace quota');
        }
        await using fx = await h.dedicated();
        const sandbox = fx.sandbox;
        const quota = SMALL_LIMITS.diskBytes;
        const slack = 2 ** 20;
        const hostPath = h.options.hostPath;
        const hostBefore = hostPath === undefined ? undefined : freeBytes(hostPath);
        // Bounded at 8× the quota, so a backend without one fails this case without filling the host.
        const dd = await sh(
          sandbox,
          `dd if=/dev/zero of=/workspace/fill bs=1M count=${(8 * quota) / 2 ** 20} 2>&1; echo "rc=$?"; sync; stat -c %s /workspace/fill`,
          { timeoutMs: 110_000 },
        );
        const hostAfter = hostPath === undefined ? undefined : freeBytes(hostPath);
        expect(dd.out, describeRun(dd)).toMatch(/No space left on device|Disk quota exceeded/);
        expect(dd.out).not.toMatch(/rc=0\n/);
        const size = Number(dd.out.trim().split('\n').at(-1));
        expect(size, 'bytes written before the quota stopped dd').toBeGreaterThan(0);
        expect(size).toBeLessThanOrEqual(quota + slack);
        if (hostBefore !== undefined && hostAfter !== undefined) {
          // Other work on the machine may write meanwhile: a generous slack, far below the 8× bound.
          expect(hostBefore - hostAfter, `host free space lost on ${hostPath}`).toBeLessThanOrEqual(
            quota + 32 * 2 ** 20,
          );
        } else {
          await ctx.annotate('hostPath not given: host free space not checked');
        }
        await expectIsolationError(
          sandbox.writeFile('more.bin', new Uint8Array(2 ** 20)),
          ['RESOURCE_LIMIT'],
          'writeFile into a full workspace',
        );
        await sandbox.remove('fill');
        await sandbox.writeFile('after.txt', 'space again');
        await expectRecovers(h, sandbox);
      },
    );

    h.case(
      'resources.inode-fill',
      'creating files stops at the inode quota; the session recovers',
      async () => {
        if (!h.backend.capabilities().diskQuota) {
          throw new Error('capabilities().diskQuota is false: SECURITY.md §1 requires an inode quota');
        }
        await using fx = await h.dedicated();
        const sandbox = fx.sandbox;
        const res = await pyJson<{ created: number; error: string | null }>(
          sandbox,
          `${PY_PRELUDE}
limit = int(sys.argv[1])
os.makedirs('/workspace/inodes', exist_ok=True)
created, error = 0, None
while created < limit:
    try:
        open('/workspace/inodes/%d' % created, 'w').close()
        created += 1
    except OSError as e:
        error = ename(e)
        break
print(json.dumps({'created': created, 'error': error}))`,
          [String(SMALL_LIMITS.inodes * 4)],
          { timeoutMs: 110_000 },
        );
        expect(['ENOSPC', 'EDQUOT'], `created ${res.created} files, then ${res.error}`).toContain(res.error);
        expect(res.created).toBeGreaterThan(0);
        expect(res.created).toBeLessThanOrEqual(SMALL_LIMITS.inodes + 256);
        await expectIsolationError(
          sandbox.writeFile('one-more.txt', 'x'),
          ['RESOURCE_LIMIT'],
          'writeFile without inodes',
        );
        await sandbox.remove('inodes', { recursive: true });
        await sandbox.writeFile('after.txt', 'inodes again');
        await expectRecovers(h, sandbox);
      },
    );

    h.case('resources.output-flood', 'an endless flood is capped and ended by the timeout', async () => {
      await using fx = await h.dedicated();
      const sandbox = fx.sandbox;
      const cap = 1 << 20;
      let streamed = 0;
      const r: RunOutput = await run(sandbox, ['yes', 'flood'], {
        timeoutMs: 5_000,
        maxOutputBytes: cap,
        onStdout: (c) => {
          streamed += c.byteLength;
        },
      });
      expect(r.truncated, describeRun(r)).toBe(true);
      expect(r.stdout.byteLength + r.stderr.byteLength).toBeLessThanOrEqual(cap);
      expect(streamed).toBeLessThanOrEqual(cap);
      expect(r.timedOut || r.exitCode !== 0, 'the flood was ended').toBe(true);
      await expectNoProcesses(sandbox, '^yes flood$', 'after the flood');
      await expectRecovers(h, sandbox);
    });

    h.case('resources.infinite-loop', 'a busy loop is killed at the timeout', async () => {
      await using fx = await h.dedicated();
      const sandbox = fx.sandbox;
      const marker = nonce('loop');
      const r = await run(sandbox, ['sh', '-c', 'while :; do :; done', marker], { timeoutMs: 3_000 });
      expect(r.timedOut, describeRun(r)).toBe(true);
      expect(r.exitCode).toBeNull();
      await expectNoProcesses(sandbox, marker, 'after the timeout');
      await expectRecovers(h, sandbox);
    });

    h.case(
      'resources.long-sleep',
      'sleeps past the timeout die with their children, even ones ignoring SIGTERM/SIGHUP',
      async () => {
        await using fx = await h.dedicated();
        const sandbox = fx.sandbox;
        const script = [
          "trap '' TERM HUP INT",
          "(trap '' TERM HUP; exec sleep 3023) &",
          'nohup sleep 3024 >/dev/null 2>&1 &',
          '(sleep 3025 &)',
          'sleep 3026',
        ].join('\n');
        const pending = sh(sandbox, script, { timeoutMs: 4_000 });
        await waitFor('the sleeps to start', async () =>
          (await processesMatching(sandbox, '^sleep 302[3-6]$')).length === 4 ? true : undefined,
        );
        const r = await pending;
        expect(r.timedOut, describeRun(r)).toBe(true);
        await expectNoProcesses(sandbox, '^sleep 302[3-6]$', 'after the timeout');
        expectOk(await run(sandbox, ['true']), 'the sandbox still answers');
      },
    );
  });
}
