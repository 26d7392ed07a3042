import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FileChanges } from '@studio/isolation';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentFixture, createFixture, describeAgent, until } from './test-utils.ts';

describeAgent(() => {
  let f: AgentFixture;
  beforeAll(async () => {
    f = await createFixture();
  });
  afterAll(async () => {
    await f?.dispose();
  });

  describe('watch', () => {
    it('reports changes in new directories, skips .git and node_modules, never follows links out', async () => {
      mkdirSync(join(f.ws, 'src'));
      mkdirSync(join(f.ws, '.git'));
      mkdirSync(join(f.ws, 'node_modules'));
      symlinkSync(f.outside, join(f.ws, 'out-link'));
      const seen = new Map<string, string>();
      const w = await f.client.watch((batch: FileChanges) => {
        for (const c of batch.changes) seen.set(c.path, c.kind);
      });
      try {
        // root, src: the skipped trees and the link are not entered.
        expect(w.dirs).toBe(2);
        expect(w.limited).toBe(false);
        writeFileSync(join(f.ws, 'src', 'a.ts'), 'x');
        writeFileSync(join(f.ws, '.git', 'HEAD'), 'ref');
        writeFileSync(join(f.ws, 'node_modules', 'm.js'), 'm');
        writeFileSync(join(f.outside, 'secret'), 's');
        mkdirSync(join(f.ws, 'later'));
        await until(() => seen.has('src/a.ts') && seen.has('later'), 5000, 'the first changes');
        // The new directory is watched once its creation is seen.
        await new Promise((r) => setTimeout(r, 150));
        writeFileSync(join(f.ws, 'later', 'b.txt'), 'b');
        await until(() => seen.has('later/b.txt'), 5000, 'a change in the new directory');
        expect(seen.get('later')).toBe('rename');
        const paths = [...seen.keys()];
        expect(paths.some((p) => p.startsWith('.git/') || p.startsWith('node_modules/'))).toBe(false);
        expect(paths.some((p) => p.includes('secret'))).toBe(false);
      } finally {
        w.close();
        await w.ended;
      }
    });
  });
});
