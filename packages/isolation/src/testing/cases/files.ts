import { createHash, randomBytes } from 'node:crypto';
import { describe, expect } from 'vitest';
import { isIsolationError } from '../../errors.ts';
import { describeError, expectIsolationError, expectOk, nonce, run, settle, sh, text } from '../fixtures.ts';
import type { ConformanceHarness } from '../harness.ts';

/** File operations of the Sandbox handle, in per-case directories of the shared sandbox. */
export function filesCases(h: ConformanceHarness): void {
  describe('files', () => {
    h.case(
      'files.text-roundtrip',
      'writeFile/readFile keep UTF-8 text exactly, as seen from inside',
      async () => {
        const sandbox = await h.shared();
        const ws = h.workspace(sandbox);
        const dir = nonce('text');
        const content = `line one\r\nünïcødé ✓ 🚀\n\ttabbed\n${nonce('t')}`;
        await sandbox.writeFile(`${dir}/note.txt`, content, { createParents: true });
        expect(text(await sandbox.readFile(`${dir}/note.txt`))).toBe(content);
        const inside = await run(sandbox, ['cat', `${ws}/${dir}/note.txt`]);
        expect(inside.out).toBe(content);
      },
    );

    h.case('files.binary-roundtrip', 'every byte value survives a round trip', async () => {
      const sandbox = await h.shared();
      const ws = h.workspace(sandbox);
      const dir = nonce('bin');
      const every = Uint8Array.from({ length: 256 * 4 }, (_, i) => i % 256);
      const bulk = new Uint8Array(randomBytes(2 * 2 ** 20));
      await sandbox.mkdir(dir);
      await sandbox.writeFile(`${dir}/every.bin`, every);
      await sandbox.writeFile(`${dir}/bulk.bin`, bulk);
      expect(Buffer.from(await sandbox.readFile(`${dir}/every.bin`)).equals(Buffer.from(every))).toBe(true);
      expect(Buffer.from(await sandbox.readFile(`${dir}/bulk.bin`)).equals(Buffer.from(bulk))).toBe(true);
      const sum = await run(sandbox, ['sha256sum', `${ws}/${dir}/bulk.bin`]);
      expect(sum.out.split(' ')[0]).toBe(createHash('sha256').update(bulk).digest('hex'));
      await sandbox.writeFile(`${dir}/empty.bin`, new Uint8Array(0));
      expect((await sandbox.readFile(`${dir}/empty.bin`)).byteLength).toBe(0);
    });

    h.case('files.list', 'list() names files, directories and links with their types and sizes', async () => {
      const sandbox = await h.shared();
      const ws = h.workspace(sandbox);
      const dir = nonce('list');
      await sandbox.writeFile(`${dir}/a.txt`, 'abc', { createParents: true });
      await sandbox.mkdir(`${dir}/sub`);
      expectOk(await sh(sandbox, `ln -s a.txt ${ws}/${dir}/link`), 'ln -s inside the workspace');
      const entries = await sandbox.list(dir);
      const byName = Object.fromEntries(entries.map((e) => [e.name, e]));
      expect(Object.keys(byName).sort()).toEqual(['a.txt', 'link', 'sub']);
      expect(byName['a.txt']).toMatchObject({ type: 'file', size: 3 });
      expect(byName.sub?.type).toBe('directory');
      expect(byName.link?.type, 'a link is listed as a link, not followed').toBe('symlink');
      for (const e of entries) expect(e.name).not.toContain('/');
      // maxEntries caps the answer: either at most that many entries, or RESOURCE_LIMIT.
      const capped = await settle(sandbox.list(dir, { maxEntries: 2 }));
      if (capped.ok) expect(capped.value.length).toBeLessThanOrEqual(2);
      else expect(isIsolationError(capped.error, 'RESOURCE_LIMIT'), describeError(capped.error)).toBe(true);
    });

    h.case('files.stat', 'stat() reports type, size, mode and mtime', async () => {
      const sandbox = await h.shared();
      const ws = h.workspace(sandbox);
      const dir = nonce('stat');
      const before = Date.now();
      await sandbox.writeFile(`${dir}/f.txt`, 'hello', { createParents: true, mode: 0o640 });
      const s = await sandbox.stat(`${dir}/f.txt`);
      expect(s).toMatchObject({ path: `${dir}/f.txt`, name: 'f.txt', type: 'file', size: 5 });
      expect(s.mode & 0o777).toBe(0o640);
      expect(s.mtimeMs).toBeGreaterThan(before - 24 * 3600_000); // the clock inside may drift a little
      const inside = await run(sandbox, ['stat', '-c', '%a %s', `${ws}/${dir}/f.txt`]);
      expect(inside.out.trim()).toBe('640 5');
      const d = await sandbox.stat(dir);
      expect(d.type).toBe('directory');
    });

    h.case('files.mkdir', 'mkdir() creates one level, or all with recursive', async () => {
      const sandbox = await h.shared();
      const ws = h.workspace(sandbox);
      const dir = nonce('mkdir');
      await sandbox.mkdir(`${dir}/a/b/c`, { recursive: true });
      expectOk(await run(sandbox, ['test', '-d', `${ws}/${dir}/a/b/c`]), 'nested directory exists');
      await sandbox.mkdir(`${dir}/a/b/c`, { recursive: true }); // mkdir -p on an existing path is fine
      await expectIsolationError(sandbox.mkdir(`${dir}/a`), ['ALREADY_EXISTS'], 'mkdir of an existing dir');
      await expectIsolationError(
        sandbox.mkdir(`${dir}/missing/x`),
        ['NOT_FOUND'],
        'mkdir without recursive under a missing parent',
      );
    });

    h.case('files.rename', 'rename() moves files and directories', async () => {
      const sandbox = await h.shared();
      const dir = nonce('rename');
      await sandbox.writeFile(`${dir}/old.txt`, 'moved', { createParents: true });
      await sandbox.rename(`${dir}/old.txt`, `${dir}/new.txt`);
      expect(text(await sandbox.readFile(`${dir}/new.txt`))).toBe('moved');
      await expectIsolationError(sandbox.readFile(`${dir}/old.txt`), ['NOT_FOUND'], 'old name after rename');
      await sandbox.mkdir(`${dir}/d1`);
      await sandbox.writeFile(`${dir}/d1/inner.txt`, 'inner');
      await sandbox.rename(`${dir}/d1`, `${dir}/d2`);
      expect(text(await sandbox.readFile(`${dir}/d2/inner.txt`))).toBe('inner');
    });

    h.case('files.remove', 'remove() deletes files, and trees only with recursive', async () => {
      const sandbox = await h.shared();
      const ws = h.workspace(sandbox);
      const dir = nonce('remove');
      await sandbox.writeFile(`${dir}/tree/a/b/deep.txt`, 'x', { createParents: true });
      await sandbox.writeFile(`${dir}/single.txt`, 'x');
      await sandbox.remove(`${dir}/single.txt`);
      await expectIsolationError(sandbox.stat(`${dir}/single.txt`), ['NOT_FOUND'], 'removed file');
      const refused = await settle(sandbox.remove(`${dir}/tree`));
      expect(refused.ok, 'remove of a non-empty directory without recursive').toBe(false);
      if (!refused.ok) {
        expect(
          isIsolationError(refused.error) && !['NOT_FOUND', 'INTERNAL'].includes(refused.error.code),
          `remove of a non-empty directory: ${describeError(refused.error)}`,
        ).toBe(true);
      }
      expectOk(await run(sandbox, ['test', '-f', `${ws}/${dir}/tree/a/b/deep.txt`]), 'tree kept');
      await sandbox.remove(`${dir}/tree`, { recursive: true });
      expect((await run(sandbox, ['test', '-e', `${ws}/${dir}/tree`])).exitCode).toBe(1);
    });

    h.case('files.owner-uid', 'what the API writes is owned by the sandbox user 1000:1000', async () => {
      const sandbox = await h.shared();
      const ws = h.workspace(sandbox);
      const dir = nonce('owner');
      await sandbox.writeFile(`${dir}/sub/f.txt`, 'x', { createParents: true });
      await sandbox.mkdir(`${dir}/made`);
      const r = await run(sandbox, [
        'stat',
        '-c',
        '%u:%g %n',
        `${ws}/${dir}`,
        `${ws}/${dir}/sub`,
        `${ws}/${dir}/sub/f.txt`,
        `${ws}/${dir}/made`,
      ]);
      expectOk(r, 'stat');
      for (const line of r.out.trim().split('\n')) expect(line).toMatch(/^1000:1000 /);
    });

    h.case('files.exec-visible', 'files written by exec are read by the API and the reverse', async () => {
      const sandbox = await h.shared();
      const ws = h.workspace(sandbox);
      const dir = nonce('visible');
      const token = nonce('v');
      expectOk(
        await sh(sandbox, `mkdir ${ws}/${dir} && printf %s ${token} > ${ws}/${dir}/from-exec`),
        'exec write',
      );
      expect(text(await sandbox.readFile(`${dir}/from-exec`))).toBe(token);
      await sandbox.writeFile(`${dir}/from-api`, token);
      expect((await run(sandbox, ['cat', `${ws}/${dir}/from-api`])).out).toBe(token);
      expect((await sandbox.list(dir)).map((e) => e.name).sort()).toEqual(['from-api', 'from-exec']);
    });

    h.case('files.not-found', 'operations on missing paths reject NOT_FOUND', async () => {
      const sandbox = await h.shared();
      const missing = `${nonce('missing')}/nothing.txt`;
      await expectIsolationError(sandbox.readFile(missing), ['NOT_FOUND'], 'readFile');
      await expectIsolationError(sandbox.stat(missing), ['NOT_FOUND'], 'stat');
      await expectIsolationError(sandbox.list(missing), ['NOT_FOUND'], 'list');
      await expectIsolationError(sandbox.rename(missing, 'elsewhere.txt'), ['NOT_FOUND'], 'rename');
      await expectIsolationError(
        sandbox.writeFile(missing, 'x'),
        ['NOT_FOUND'],
        'writeFile without createParents',
      );
    });

    /** Collects watch batches; `seen(prefix)` is every reported path under `prefix/`, relative to it. */
    async function watching(sandbox: Awaited<ReturnType<typeof h.shared>>) {
      const paths: string[] = [];
      let overflow = false;
      const watch = await sandbox.watchFiles((batch) => {
        overflow ||= batch.overflow;
        for (const c of batch.changes) paths.push(c.path);
      });
      const seen = (prefix: string) =>
        paths.filter((p) => p.startsWith(`${prefix}/`)).map((p) => p.slice(prefix.length + 1));
      const until = async (check: () => boolean, what: string) => {
        const end = Date.now() + 10_000;
        while (!check()) {
          if (Date.now() > end)
            throw new Error(`watch: timed out waiting for ${what}; saw ${JSON.stringify(paths)}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      };
      return { watch, seen, until, overflow: () => overflow };
    }

    h.case(
      'files.watch',
      'watchFiles() reports what sandbox processes change, new directories included, until it is closed',
      async () => {
        const sandbox = await h.shared();
        const ws = h.workspace(sandbox);
        const dir = nonce('watch');
        await sandbox.mkdir(dir);
        const w = await watching(sandbox);
        expect(w.watch.dirs).toBeGreaterThan(0);
        expectOk(await sh(sandbox, `cd ${ws}/${dir} && echo 1 > a.txt && mkdir sub`), 'write and mkdir');
        await w.until(() => w.seen(dir).includes('a.txt') && w.seen(dir).includes('sub'), 'a.txt and sub');
        // The new directory is watched too, once it has been seen.
        expectOk(
          await sh(sandbox, `cd ${ws}/${dir} && echo 2 > sub/b.txt && mv a.txt c.txt`),
          'nested write, mv',
        );
        await w.until(
          () => ['sub/b.txt', 'c.txt'].every((p) => w.seen(dir).includes(p)),
          'sub/b.txt and c.txt',
        );
        // Writes through the handle are changes too.
        await sandbox.writeFile(`${dir}/api.txt`, 'x');
        await w.until(() => w.seen(dir).includes('api.txt'), 'api.txt');
        w.watch.close();
        await w.watch.ended;
        const before = w.seen(dir).length;
        expectOk(await sh(sandbox, `echo 3 > ${ws}/${dir}/after-close.txt`), 'write after close');
        await new Promise((r) => setTimeout(r, 400));
        expect(w.seen(dir).length, 'nothing arrives after close').toBe(before);
      },
    );

    h.case(
      'files.watch-stays-inside',
      'watchFiles() reports nothing outside the workspace, through links to outside, or in .git and node_modules',
      async () => {
        const sandbox = await h.shared();
        const ws = h.workspace(sandbox);
        const dir = nonce('watchin');
        const outside = `/tmp/${nonce('outside')}`;
        await using _cleanup = {
          // Outside the workspace, so destroying the sandbox would not remove it where /tmp is not its own.
          [Symbol.asyncDispose]: async () =>
            void (await sh(sandbox, `rm -rf ${outside}`).catch(() => undefined)),
        };
        expectOk(
          await sh(
            sandbox,
            `mkdir -p ${outside} ${ws}/${dir}/.git ${ws}/${dir}/node_modules/pkg && ln -s ${outside} ${ws}/${dir}/out`,
          ),
          'set up a link to outside and skipped trees',
        );
        const w = await watching(sandbox);
        expectOk(
          await sh(
            sandbox,
            `echo 1 > ${outside}/secret.txt; echo 1 > ${ws}/${dir}/out/via-link.txt; echo 1 > ${ws}/${dir}/.git/HEAD; echo 1 > ${ws}/${dir}/node_modules/pkg/index.js; echo 1 > ${ws}/${dir}/marker.txt`,
          ),
          'writes outside, through the link, in skipped trees, then a marker',
        );
        await w.until(() => w.seen(dir).includes('marker.txt'), 'the marker');
        await new Promise((r) => setTimeout(r, 300));
        const seen = w.seen(dir);
        expect(seen.filter((p) => p.startsWith('out/') || p.includes('secret'))).toEqual([]);
        expect(seen.filter((p) => p.startsWith('.git/') || p.startsWith('node_modules/'))).toEqual([]);
        w.watch.close();
      },
    );
  });
}
