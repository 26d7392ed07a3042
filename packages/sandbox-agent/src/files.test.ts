import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentFixture, createFixture, describeAgent, expectCode, text } from './test-utils.ts';

describeAgent(() => {
  let f: AgentFixture;
  beforeAll(async () => {
    f = await createFixture();
  });
  afterAll(async () => {
    await f?.dispose();
  });

  describe('files', () => {
    it('round-trips text and binary (all 256 byte values) and large files', async () => {
      await f.client.writeFile('hello.txt', 'héllo wörld\n');
      expect(text(await f.client.readFile('hello.txt'))).toBe('héllo wörld\n');
      expect(readFileSync(join(f.ws, 'hello.txt'), 'utf8')).toBe('héllo wörld\n');

      const bytes = new Uint8Array(256 * 4).map((_, i) => i % 256);
      await f.client.writeFile('bytes.bin', bytes);
      expect(Buffer.from(await f.client.readFile('bytes.bin'))).toEqual(Buffer.from(bytes));
      expect(readFileSync(join(f.ws, 'bytes.bin'))).toEqual(Buffer.from(bytes));

      const big = randomBytes(5 * 1024 * 1024 + 7);
      await f.client.writeFile('big.bin', big);
      expect(Buffer.from(await f.client.readFile('big.bin')).equals(big)).toBe(true);

      await f.client.writeFile('empty', '');
      expect((await f.client.readFile('empty')).length).toBe(0);
    });

    it('writes atomically through a temp file, leaving nothing behind, and keeps or sets the mode', async () => {
      mkdirSync(join(f.ws, 'atomic'));
      await f.client.writeFile('atomic/a.sh', '#!/bin/sh\n', { mode: 0o755 });
      expect(statSync(join(f.ws, 'atomic/a.sh')).mode & 0o777).toBe(0o755);
      await f.client.writeFile('atomic/a.sh', '#!/bin/sh\necho 2\n');
      expect(statSync(join(f.ws, 'atomic/a.sh')).mode & 0o777).toBe(0o755);
      expect(readdirSync(join(f.ws, 'atomic'))).toEqual(['a.sh']);
      await expectCode(f.client.writeFile('atomic/b', 'x', { mode: 0o4755 }), 'INVALID_INPUT');
    });

    it('creates parents only when asked', async () => {
      await expectCode(f.client.writeFile('deep/er/file.txt', 'x'), 'NOT_FOUND');
      await f.client.writeFile('deep/er/file.txt', 'x', { createParents: true });
      expect(readFileSync(join(f.ws, 'deep/er/file.txt'), 'utf8')).toBe('x');
    });

    it('lists a directory, sorted, with types, without following links', async () => {
      mkdirSync(join(f.ws, 'ls/sub'), { recursive: true });
      writeFileSync(join(f.ws, 'ls/b.txt'), '12345');
      symlinkSync('b.txt', join(f.ws, 'ls/a-link'));
      symlinkSync('/etc/passwd', join(f.ws, 'ls/outside-link'));
      const entries = await f.client.list('ls');
      expect(entries.map((e) => [e.name, e.type])).toEqual([
        ['a-link', 'symlink'],
        ['b.txt', 'file'],
        ['outside-link', 'symlink'],
        ['sub', 'directory'],
      ]);
      expect(entries.find((e) => e.name === 'b.txt')).toMatchObject({ size: 5 });
      expect((await f.client.list('')).map((e) => e.name)).toContain('ls');
      await expectCode(f.client.list('ls', { maxEntries: 3 }), 'RESOURCE_LIMIT');
      await expectCode(f.client.list('ls/b.txt'), 'INVALID_INPUT');
      await expectCode(f.client.list('nope'), 'NOT_FOUND');
    });

    it('stats with lstat semantics', async () => {
      mkdirSync(join(f.ws, 'st'));
      writeFileSync(join(f.ws, 'st/f'), 'abc', { mode: 0o640 });
      symlinkSync('f', join(f.ws, 'st/l'));
      expect(await f.client.stat('st/f')).toMatchObject({
        path: 'st/f',
        name: 'f',
        type: 'file',
        size: 3,
        mode: 0o640,
      });
      expect(await f.client.stat('st/l')).toMatchObject({ name: 'l', type: 'symlink' });
      expect(await f.client.stat('st')).toMatchObject({ type: 'directory' });
      expect(await f.client.stat('')).toMatchObject({ path: '', type: 'directory' });
      await expectCode(f.client.stat('st/missing'), 'NOT_FOUND');
    });

    it('makes directories, recursively when asked', async () => {
      await f.client.mkdir('mk');
      await expectCode(f.client.mkdir('mk'), 'ALREADY_EXISTS');
      await expectCode(f.client.mkdir('mk2/a/b'), 'NOT_FOUND');
      await f.client.mkdir('mk2/a/b', { recursive: true });
      await f.client.mkdir('mk2/a/b', { recursive: true });
      expect(statSync(join(f.ws, 'mk2/a/b')).isDirectory()).toBe(true);
      writeFileSync(join(f.ws, 'mk2/file'), '');
      await expectCode(f.client.mkdir('mk2/file/x', { recursive: true }), 'ALREADY_EXISTS');
    });

    it('renames without overwriting', async () => {
      writeFileSync(join(f.ws, 'ren-a'), 'a');
      writeFileSync(join(f.ws, 'ren-b'), 'b');
      await f.client.rename('ren-a', 'ren-c');
      expect(readFileSync(join(f.ws, 'ren-c'), 'utf8')).toBe('a');
      await expectCode(f.client.rename('ren-c', 'ren-b'), 'ALREADY_EXISTS');
      await expectCode(f.client.rename('ren-missing', 'ren-d'), 'NOT_FOUND');
      mkdirSync(join(f.ws, 'ren-dir'));
      await f.client.rename('ren-c', 'ren-dir/moved');
      expect(existsSync(join(f.ws, 'ren-dir/moved'))).toBe(true);
      await expectCode(f.client.rename('ren-dir', 'ren-dir/inside'), 'INVALID_INPUT');
    });

    it('removes files, empty directories and, with recursive, trees', async () => {
      mkdirSync(join(f.ws, 'rm/a/b/c'), { recursive: true });
      writeFileSync(join(f.ws, 'rm/a/b/c/f'), 'x');
      writeFileSync(join(f.ws, 'rm/top'), 'x');
      symlinkSync('/etc', join(f.ws, 'rm/a/etc-link'));
      await f.client.remove('rm/top');
      expect(existsSync(join(f.ws, 'rm/top'))).toBe(false);
      await expectCode(f.client.remove('rm/a'), 'INVALID_INPUT');
      await f.client.remove('rm/a', { recursive: true });
      expect(existsSync(join(f.ws, 'rm/a'))).toBe(false);
      expect(existsSync('/etc/passwd')).toBe(true);
      await expectCode(f.client.remove('rm/missing'), 'NOT_FOUND');
      await expectCode(f.client.remove(''), 'INVALID_INPUT');
      mkdirSync(join(f.ws, 'rm/empty'));
      await f.client.remove('rm/empty');
    });

    it('handles any file name: Unicode, and bytes that are not UTF-8', async () => {
      await f.client.writeFile('ünï cødé/😀 "q" \'s\'.txt', 'smile', { createParents: true });
      expect(readFileSync(join(f.ws, 'ünï cødé/😀 "q" \'s\'.txt'), 'utf8')).toBe('smile');
      expect((await f.client.list('ünï cødé')).map((e) => e.name)).toEqual(['😀 "q" \'s\'.txt']);
      // Sandbox code can create names that are not UTF-8: they are listed (lossily) and removable.
      mkdirSync(join(f.ws, 'raw/sub'), { recursive: true });
      const raw = Buffer.concat([Buffer.from(join(f.ws, 'raw/sub/')), Buffer.from([0x62, 0xff, 0xfe])]);
      writeFileSync(raw, 'x');
      expect((await f.client.list('raw/sub')).map((e) => e.name)).toEqual(['b\ufffd\ufffd']);
      await f.client.remove('raw', { recursive: true });
      expect(existsSync(join(f.ws, 'raw'))).toBe(false);
    });

    it('refuses files over maxBytes, directories and special files', async () => {
      writeFileSync(join(f.ws, 'ten'), '0123456789');
      await expectCode(f.client.readFile('ten', { maxBytes: 9 }), 'RESOURCE_LIMIT');
      expect(text(await f.client.readFile('ten', { maxBytes: 10 }))).toBe('0123456789');
      mkdirSync(join(f.ws, 'a-dir'));
      await expectCode(f.client.readFile('a-dir'), 'INVALID_INPUT');
      await expectCode(f.client.writeFile('a-dir', 'x'), 'INVALID_INPUT');
      // A FIFO must not hang the agent (it is opened non-blocking and refused).
      execFileSync('mkfifo', [join(f.ws, 'fifo')]);
      await expectCode(f.client.readFile('fifo'), 'INVALID_INPUT');
      await expectCode(f.client.readFile('missing'), 'NOT_FOUND');
      await expectCode(f.client.readFile('ten/below'), 'NOT_FOUND');
    });

    it('refuses paths that are absolute, climb, or carry control characters or backslashes', async () => {
      for (const bad of [
        '../x',
        'a/../../x',
        '/etc/passwd',
        'a\\b',
        'a\0b',
        'a\nb',
        'a\u0085b',
        '',
        '.',
        'x/..',
      ]) {
        await expectCode(f.client.readFile(bad), 'INVALID_INPUT');
        await expectCode(f.client.writeFile(bad, 'x'), 'INVALID_INPUT');
        await expectCode(f.client.remove(bad, { recursive: true }), 'INVALID_INPUT');
      }
      await expectCode(f.client.stat('..'), 'INVALID_INPUT');
      await expectCode(f.client.list('/'), 'INVALID_INPUT');
      await expectCode(f.client.rename('ok', '../ok'), 'INVALID_INPUT');
      await expectCode(f.client.readFile(`${'x'.repeat(256)}`), 'INVALID_INPUT');
      // '.' and empty segments are harmless and dropped.
      writeFileSync(join(f.ws, 'dots.txt'), 'ok');
      expect(text(await f.client.readFile('./dots.txt'))).toBe('ok');
      expect(text(await f.client.readFile('.//dots.txt'))).toBe('ok');
      await expectCode(f.client.readFile('st//../dots.txt'), 'INVALID_INPUT');
    });
  });
});
