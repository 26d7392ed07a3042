import { type ChildProcess, spawn } from 'node:child_process';
import {
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { isIsolationError } from '@studio/isolation';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type AgentFixture,
  createFixture,
  describeAgent,
  expectCode,
  race,
  SWAPPER,
  type Swapper,
  text,
  until,
} from './test-utils.ts';

// Sandbox code controls every name in the workspace; nothing outside it may be read, written, created,
// listed or deleted through the agent (SECURITY.md §2, CWE-22/CWE-59, CVE-2018-15664).

const CANARY = 'CANARY-7f3c9e-outside-secret-must-never-be-read';

describeAgent(() => {
  let f: AgentFixture;
  beforeAll(async () => {
    f = await createFixture();
  });
  afterAll(async () => {
    await f?.dispose();
  });

  /** Every file and directory under `dir` with its content, to prove it unchanged. */
  function snapshot(dir: string): Record<string, string> {
    const out: Record<string, string> = {};
    const walk = (d: string, rel: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          out[`${r}/`] = 'dir';
          walk(p, r);
        } else out[r] = e.isSymbolicLink() ? 'link' : readFileSync(p, 'latin1');
      }
    };
    walk(dir, '');
    return out;
  }

  let n = 0;
  /** A fresh outside directory full of canaries, and a workspace subdirectory for one test. */
  function arena(): { out: string; ws: string; rel: string } {
    n++;
    const out = join(f.outside, `o${n}`);
    const rel = `t${n}`;
    const ws = join(f.ws, rel);
    mkdirSync(join(out, 'dir'), { recursive: true });
    mkdirSync(ws);
    writeFileSync(join(out, 'secret.txt'), CANARY);
    writeFileSync(join(out, 'file.txt'), CANARY);
    writeFileSync(join(out, 'dir/inner.txt'), CANARY);
    return { out, ws, rel };
  }

  describe('symlinks planted by sandbox code', () => {
    let a: ReturnType<typeof arena>;
    let before: Record<string, string>;
    beforeEach(() => {
      a = arena();
      before = snapshot(f.outside);
    });

    it('a link to an outside directory cannot be read, written, listed, created or deleted through', async () => {
      symlinkSync(a.out, join(a.ws, 'evil'));
      const p = (s: string) => `${a.rel}/${s}`;
      await expectCode(f.client.readFile(p('evil/secret.txt')), 'FORBIDDEN');
      await expectCode(f.client.writeFile(p('evil/new.txt'), 'x'), 'FORBIDDEN');
      await expectCode(
        f.client.writeFile(p('evil/new/deeper.txt'), 'x', { createParents: true }),
        'FORBIDDEN',
      );
      await expectCode(f.client.writeFile(p('evil/secret.txt'), 'overwritten'), 'FORBIDDEN');
      await expectCode(f.client.list(p('evil')), 'FORBIDDEN');
      await expectCode(f.client.list(p('evil/dir')), 'FORBIDDEN');
      await expectCode(f.client.mkdir(p('evil/made')), 'FORBIDDEN');
      await expectCode(f.client.mkdir(p('evil/made/deep'), { recursive: true }), 'FORBIDDEN');
      await expectCode(f.client.remove(p('evil/secret.txt')), 'FORBIDDEN');
      await expectCode(f.client.remove(p('evil/dir'), { recursive: true }), 'FORBIDDEN');
      await expectCode(f.client.stat(p('evil/secret.txt')), 'FORBIDDEN');
      await expectCode(f.client.rename(p('evil/secret.txt'), p('stolen.txt')), 'FORBIDDEN');
      await expectCode(f.client.rename(p('x'), p('evil/planted')), 'FORBIDDEN');
      expect(await f.client.stat(p('evil'))).toMatchObject({ type: 'symlink' });
      expect(snapshot(f.outside)).toEqual(before);
      // Removing the link removes the link, never what it points to.
      await f.client.remove(p('evil'), { recursive: true });
      expect(snapshot(f.outside)).toEqual(before);
    });

    it('a link to an outside file (absolute or relative) is refused for reads and writes', async () => {
      symlinkSync(join(a.out, 'secret.txt'), join(a.ws, 'abs'));
      symlinkSync(`../../outside/o${n}/secret.txt`, join(a.ws, 'rel'));
      symlinkSync('/etc/passwd', join(a.ws, 'passwd'));
      for (const name of ['abs', 'rel', 'passwd']) {
        await expectCode(f.client.readFile(`${a.rel}/${name}`), 'FORBIDDEN');
        await expectCode(f.client.writeFile(`${a.rel}/${name}`, 'overwritten'), 'FORBIDDEN');
      }
      await f.client.remove(`${a.rel}/abs`);
      expect(snapshot(f.outside)).toEqual(before);
      expect(readFileSync('/etc/passwd', 'utf8')).not.toBe('overwritten');
    });

    it('links that stay inside are followed, through chains of up to 8 hops', async () => {
      writeFileSync(join(a.ws, 'real.txt'), 'inside');
      mkdirSync(join(a.ws, 'realdir'));
      writeFileSync(join(a.ws, 'realdir/f'), 'in dir');
      symlinkSync('real.txt', join(a.ws, 'l1'));
      symlinkSync('l1', join(a.ws, 'l2'));
      symlinkSync(join(a.ws, 'l2'), join(a.ws, 'l3'));
      symlinkSync('realdir', join(a.ws, 'dlink'));
      expect(text(await f.client.readFile(`${a.rel}/l3`))).toBe('inside');
      expect(text(await f.client.readFile(`${a.rel}/dlink/f`))).toBe('in dir');
      expect((await f.client.list(`${a.rel}/dlink`)).map((e) => e.name)).toEqual(['f']);
      await f.client.writeFile(`${a.rel}/l3`, 'written through');
      expect(readFileSync(join(a.ws, 'real.txt'), 'utf8')).toBe('written through');
      expect(await f.client.stat(`${a.rel}/l3`)).toMatchObject({ type: 'symlink' });
      // 10 hops: refused, not followed forever.
      for (let i = 1; i <= 10; i++) symlinkSync(i === 1 ? 'real.txt' : `c${i - 1}`, join(a.ws, `c${i}`));
      await expectCode(f.client.readFile(`${a.rel}/c10`), 'INVALID_INPUT');
      // A chain that leaves the workspace at its last hop is still refused.
      symlinkSync(join(a.out, 'secret.txt'), join(a.ws, 'out1'));
      symlinkSync('out1', join(a.ws, 'out2'));
      await expectCode(f.client.readFile(`${a.rel}/out2`), 'FORBIDDEN');
      expect(snapshot(f.outside)).toEqual(before);
    });

    it('symlink loops end in an error', async () => {
      symlinkSync('loop-b', join(a.ws, 'loop-a'));
      symlinkSync('loop-a', join(a.ws, 'loop-b'));
      await expectCode(f.client.readFile(`${a.rel}/loop-a`), 'INVALID_INPUT');
      await expectCode(f.client.writeFile(`${a.rel}/loop-a`, 'x'), 'INVALID_INPUT');
      await expectCode(f.client.list(`${a.rel}/loop-a`), 'INVALID_INPUT');
      await expectCode(f.client.readFile(`${a.rel}/loop-a/x`), 'INVALID_INPUT');
      symlinkSync('.', join(a.ws, 'self'));
      // A link to '.' nests without end, but each step is one hop that stays inside: fine.
      expect((await f.client.list(`${a.rel}/self/self/self`)).map((e) => e.name)).toContain('loop-a');
    });

    it('hardlinks: only possible locally (same file system); the agent never writes or deletes through them', async () => {
      // Inside a sandbox /workspace is its own mount and link(2) across mounts fails with EXDEV, so sandbox
      // code cannot make a hardlink to a file outside. Here, on one file system, it can: such a file *is*
      // in the workspace (same inode), so reading it returns its content; writing replaces the name with a
      // new file (temp + rename) and removing unlinks the name, so the outside file never changes.
      writeFileSync(join(a.out, 'hard.txt'), CANARY);
      before = snapshot(f.outside);
      linkSync(join(a.out, 'hard.txt'), join(a.ws, 'hard'));
      expect(text(await f.client.readFile(`${a.rel}/hard`))).toBe(CANARY);
      await f.client.writeFile(`${a.rel}/hard`, 'replaced');
      expect(readFileSync(join(a.ws, 'hard'), 'utf8')).toBe('replaced');
      expect(readFileSync(join(a.out, 'hard.txt'), 'utf8')).toBe(CANARY);
      linkSync(join(a.out, 'hard.txt'), join(a.ws, 'hard2'));
      await f.client.remove(`${a.rel}/hard2`);
      expect(snapshot(f.outside)).toEqual(before);
      expect(statSync(join(a.out, 'hard.txt')).nlink).toBe(1);
    });
  });

  async function startSwapper(args: string[]): Promise<Swapper> {
    const child: ChildProcess = spawn('python3', ['-c', SWAPPER, ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let swaps = -1;
    let partial = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (s: string) => {
      const lines = (partial + s).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) swaps = Number(line);
    });
    await until(() => swaps >= 0, 10_000, 'the swapper to start');
    return {
      get swaps() {
        return swaps;
      },
      async stop() {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      },
    };
  }

  describe('the symlink race (CVE-2018-15664 class)', () => {
    /** Runs `op`, sorting the outcome: fine, refused (FORBIDDEN), or another expected error. */
    async function attempt(
      results: { ok: number; forbidden: number; other: number },
      op: () => Promise<unknown>,
    ) {
      try {
        const value = await op();
        results.ok++;
        return value;
      } catch (error) {
        if (!isIsolationError(error)) throw error;
        if (error.code === 'FORBIDDEN') results.forbidden++;
        else if (['NOT_FOUND', 'INVALID_INPUT', 'ALREADY_EXISTS'].includes(error.code)) results.other++;
        else throw error;
        return undefined;
      }
    }

    it('a directory swapped with a link to outside, thousands of times, during hundreds of operations', async () => {
      const a = arena();
      for (let i = 0; i < 300; i++) {
        writeFileSync(join(a.out, `victim-${i}`), CANARY);
        mkdirSync(join(a.out, `rdir-${i}`));
        writeFileSync(join(a.out, `rdir-${i}/f`), CANARY);
      }
      writeFileSync(join(a.out, 'outside-only-name'), CANARY);
      mkdirSync(join(a.ws, 'x'));
      writeFileSync(join(a.ws, 'x/file.txt'), 'inside');
      for (let i = 0; i < 300; i++) writeFileSync(join(a.ws, `x/victim-${i}`), 'inside victim');
      symlinkSync(a.out, join(a.ws, 'x-alt'));
      const before = snapshot(f.outside);

      const swapper = await startSwapper(['exchange', join(a.ws, 'x'), join(a.ws, 'x-alt')]);
      const results = { ok: 0, forbidden: 0, other: 0 };
      const seen: string[] = [];
      try {
        await race(swapper, 300, 5000, async (i) => {
          const p = (s: string) => `${a.rel}/x/${s}`;
          const read = await attempt(results, () => f.client.readFile(p('file.txt')));
          if (read) seen.push(text(read as Uint8Array));
          const listed = await attempt(results, () => f.client.list(`${a.rel}/x`));
          if (listed) seen.push(JSON.stringify(listed));
          const st = await attempt(results, () => f.client.stat(p('file.txt')));
          if (st) seen.push(String((st as { size: number }).size));
          await attempt(results, () => f.client.writeFile(p(`w-${i}.txt`), 'written'));
          await attempt(results, () => f.client.writeFile(p('file.txt'), 'inside'));
          await attempt(results, () => f.client.mkdir(p(`m-${i}`)));
          await attempt(results, () => f.client.remove(p(`victim-${i}`)));
          await attempt(results, () => f.client.remove(p(`rdir-${i}`), { recursive: true }));
        });
      } finally {
        await swapper.stop();
      }
      expect(snapshot(f.outside)).toEqual(before);
      for (const s of seen) {
        expect(s).not.toContain(CANARY);
        expect(s).not.toContain('outside-only-name');
        expect(s).not.toBe(String(CANARY.length));
      }
      expect(results.ok).toBeGreaterThan(0);
      expect(results.forbidden).toBeGreaterThan(0);
    }, 120_000);

    it('a file swapped with a link to an outside file, during reads, writes and removes of that name', async () => {
      const a = arena();
      const before = snapshot(f.outside);
      const swapper = await startSwapper(['replace', join(a.ws, 'y'), join(a.out, 'secret.txt')]);
      const results = { ok: 0, forbidden: 0, other: 0 };
      try {
        await race(swapper, 300, 5000, async (i) => {
          const read = await attempt(results, () => f.client.readFile(`${a.rel}/y`));
          if (read) expect(text(read as Uint8Array)).not.toContain(CANARY);
          await attempt(results, () => f.client.writeFile(`${a.rel}/y`, `written ${i}`));
          if (i % 10 === 0) await attempt(results, () => f.client.remove(`${a.rel}/y`));
        });
      } finally {
        await swapper.stop();
      }
      expect(snapshot(f.outside)).toEqual(before);
      expect(results.ok).toBeGreaterThan(0);
      expect(results.forbidden).toBeGreaterThan(0);
    }, 120_000);

    it('recursive remove while a subdirectory is swapped with a link to outside', async () => {
      const a = arena();
      for (let i = 0; i < 50; i++) writeFileSync(join(a.out, `dir/keep-${i}`), CANARY);
      const before = snapshot(f.outside);
      const top = join(a.ws, 'top');
      const swapper = await startSwapper(['exchange', join(top, 'sub'), join(top, 'sub-alt')]);
      const results = { ok: 0, forbidden: 0, other: 0 };
      try {
        await race(swapper, 100, 2000, async (i) => {
          // Built aside and moved into place whole: writing into top/sub while it is being swapped would
          // make this test itself write outside.
          const stage = join(a.ws, `stage-${i}`);
          mkdirSync(join(stage, 'sub/deeper'), { recursive: true });
          for (let j = 0; j < 5; j++) writeFileSync(join(stage, `sub/deeper/f${j}`), 'inside');
          symlinkSync(join(a.out, 'dir'), join(stage, 'sub-alt'));
          renameSync(stage, top);
          await attempt(results, () => f.client.remove(`${a.rel}/top`, { recursive: true }));
          if (existsSync(top)) renameSync(top, join(a.ws, `leftover-${i}`));
        });
      } finally {
        await swapper.stop();
      }
      expect(snapshot(f.outside)).toEqual(before);
      expect(results.ok).toBeGreaterThan(0);
    }, 120_000);
  });
});
